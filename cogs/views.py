"""Buttons on results. They are `DynamicItem`s with stable custom ids (`imagine:<action>:<job>`),
so they keep working after a restart without any view being re-registered per message.

Every press looks the job up scoped to the pressing server: a forged or foreign id finds nothing.
"""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar

import discord

from bot.imagine import ImagineRequest
from bot.jobs import Job, JobStatus
from bot.logs import kv
from cogs import render
from cogs.imagine import ImagineModal, image_attachments, is_moderator, launch, member_roles

if TYPE_CHECKING:
    from bot.client import ImageHubBot

log = logging.getLogger(__name__)


async def _job_for(interaction: discord.Interaction, job_id: int) -> Job | None:
    bot: ImageHubBot = interaction.client  # type: ignore[assignment]
    job = None
    if interaction.guild_id is not None:
        job = await bot.services.jobs.get(job_id, guild_id=interaction.guild_id)
    if job is None:
        await interaction.response.send_message(
            embed=render.refusal("I can't find that generation on this server."), ephemeral=True
        )
    return job


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"imagine:(?P<action>[a-z]+):(?P<job>\d+)"
):
    """One class for every result button; the action is part of the custom id."""

    LABELS: ClassVar[dict[str, tuple[str, str, discord.ButtonStyle]]] = {
        "reroll": ("Reroll", "🎲", discord.ButtonStyle.primary),
        "reference": ("Use as reference", "🖼️", discord.ButtonStyle.secondary),
        "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
        "info": ("Info", "ℹ️", discord.ButtonStyle.secondary),
        "cancel": ("Cancel", "✖️", discord.ButtonStyle.danger),
    }

    def __init__(self, action: str, job_id: int) -> None:
        label, emoji, style = self.LABELS.get(action, (action.title(), None, discord.ButtonStyle.secondary))
        super().__init__(
            discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=f"imagine:{action}:{job_id}")
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        job = await _job_for(interaction, self.job_id)
        if job is None:
            return
        handler = {
            "reroll": self._reroll,
            "reference": self._reference,
            "delete": self._delete,
            "info": self._info,
            "cancel": self._cancel,
        }.get(self.action)
        if handler is None:
            await interaction.response.send_message(
                embed=render.refusal("This button is no longer supported."), ephemeral=True
            )
            return
        await handler(interaction, job)

    async def _reroll(self, interaction: discord.Interaction, job: Job) -> None:
        """Same parameters, charged again to whoever pressed."""
        bot: ImageHubBot = interaction.client  # type: ignore[assignment]
        from bot.references import Attachment

        p = job.params
        request = ImagineRequest(
            guild_id=job.guild_id,
            channel_id=interaction.channel_id or job.channel_id,
            user_id=interaction.user.id,
            role_ids=member_roles(interaction),
            prompt=p.prompt,
            model=p.model,
            aspect=p.aspect,
            resolution=p.tier,
            quality=p.quality,
            count=p.n,
            attachments=tuple(
                Attachment(
                    url=r.url, filename=r.filename, size=r.size, content_type=r.content_type, source=r.source
                )
                for r in p.references
            ),
            is_moderator=is_moderator(interaction),
        )
        await launch(bot, interaction, request)

    async def _reference(self, interaction: discord.Interaction, job: Job) -> None:
        """A modal for a new prompt; this result's images are the references."""
        bot: ImageHubBot = interaction.client  # type: ignore[assignment]
        refs = image_attachments(interaction.message) if interaction.message else ()
        if not refs:
            await interaction.response.send_message(
                embed=render.refusal("This result has no images left to use."), ephemeral=True
            )
            return
        await interaction.response.send_modal(ImagineModal(bot, refs, title="Imagine from this result"))

    async def _delete(self, interaction: discord.Interaction, job: Job) -> None:
        """Only the member who asked, or a moderator, may delete a result."""
        if interaction.user.id != job.user_id and not is_moderator(interaction):
            await interaction.response.send_message(
                embed=render.refusal("Only the member who made this, or a moderator, can delete it."),
                ephemeral=True,
            )
            return
        await interaction.response.defer()
        if interaction.message is not None:
            await interaction.message.delete()

    async def _info(self, interaction: discord.Interaction, job: Job) -> None:
        """The full prompt and settings, with a copyable /imagine line; only for the presser."""
        embed, line = render.info_embed(job)
        if line is None:
            await interaction.response.send_message(embed=embed, ephemeral=True)
            return
        file = discord.File(io.BytesIO(line.encode()), filename=f"imagine-{job.id}.txt")
        await interaction.response.send_message(embed=embed, file=file, ephemeral=True)

    async def _cancel(self, interaction: discord.Interaction, job: Job) -> None:
        """Cancel a job that hasn't reached the hub: its reservation goes back in full.

        A compare-and-set on the status (`update_if`), so a press racing the scheduler either
        cancels before the submission starts (the scheduler then loses its lease and stops) or
        finds the job already sent, whose credits are spent.
        """
        bot: ImageHubBot = interaction.client  # type: ignore[assignment]
        services = bot.services
        if interaction.user.id != job.user_id and not is_moderator(interaction):
            await interaction.response.send_message(
                embed=render.refusal(render.CANCEL_NOT_ALLOWED), ephemeral=True
            )
            return
        cancelled = await services.jobs.update_if(
            job.id,
            {JobStatus.QUEUED, JobStatus.PENDING_SUBMIT},
            status=JobStatus.CANCELLED,
            last_error=f"cancelled by {interaction.user.id}",
        )
        if cancelled is None:
            current = await services.jobs.get(job.id) or job
            if current.status in (JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.RUNNING):
                # Sent: the credits are spent. The button goes; the job's own updates keep the embed.
                await interaction.response.edit_message(view=None)
                await interaction.followup.send(embed=render.refusal(render.CANCEL_TOO_LATE), ephemeral=True)
                return
            text = (
                render.CANCEL_ALREADY_CANCELLED
                if current.status is JobStatus.CANCELLED
                else render.CANCEL_FINISHED
            )
            await interaction.response.send_message(embed=render.refusal(text), ephemeral=True)
            return
        services.references.discard(job.id)
        returned = 0
        if cancelled.reservation_id is not None:
            returned = await services.quotas.ledger.release(cancelled.reservation_id)
        log.info(
            kv("job.cancelled", job=job.id, guild=job.guild_id, by=interaction.user.id, returned=returned)
        )
        bot.services.queue_runner.changed(job.guild_id)
        bot.services.engine.wake()
        await interaction.response.edit_message(
            embed=render.cancelled_embed(cancelled, returned, interaction.user.id), view=None
        )


def result_view(job: Job) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in ("reroll", "reference", "info", "delete"):
        view.add_item(JobButton(action, job.id))
    return view


def status_view(job: Job) -> discord.ui.View:
    """The status message's button while the job has not reached the hub."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id))
    return view
