"""What a press of a job's button does: Reroll, Use as reference, Info, Delete, Cancel, and the
per-image Upscale and Vary.

Every press looks the job up scoped to the pressing server: a forged or foreign id finds nothing.
The buttons themselves (custom ids, views) are `cogs.components`'; they find this cog by its
name, "JobActions".
"""

from __future__ import annotations

import io
import logging

import discord
from discord.ext import commands

from bot.imagine import ImagineRequest
from bot.jobs import Job, JobSource, JobStatus, SourceAction
from bot.logs import kv
from bot.references import Attachment
from cogs import embeds, messages
from cogs.checks import is_moderator, may_act_on, member_roles, where
from cogs.client import ImageHubBot
from cogs.components import JobButton
from cogs.errors import Denied
from cogs.forms import ImagineModal
from cogs.launch import image_attachments, launch

log = logging.getLogger(__name__)

UPSCALE_TIER = "4K"  # Upscale renders the image again at the hub's highest tier


class JobActions(commands.Cog, name="JobActions"):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot

    async def press(
        self, interaction: discord.Interaction, action: str, job_id: int, image: int | None = None
    ) -> None:
        # Scoped to where the press happens: this server's jobs, or in a DM (or a server without
        # the bot) the presser's own jobs only (`bot.scopes`).
        job = await self.bot.services.jobs.get(job_id, guild_id=where(interaction).scope)
        if job is None:
            raise Denied("denied.job_not_found")
        if action in ("upscale", "vary"):
            if image is None:
                raise Denied("denied.button_unsupported")
            await self._from_image(interaction, job, SourceAction(action), image)
            return
        handler = {
            "reroll": self._reroll,
            "reference": self._reference,
            "delete": self._delete,
            "info": self._info,
            "cancel": self._cancel,
        }.get(action)
        if handler is None:
            raise Denied("denied.button_unsupported")
        await handler(interaction, job)

    async def _reroll(self, interaction: discord.Interaction, job: Job) -> None:
        """Same parameters, charged again to whoever pressed."""
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
        await launch(self.bot, interaction, request)

    async def _from_image(
        self, interaction: discord.Interaction, job: Job, action: SourceAction, image: int
    ) -> None:
        """Upscale (the same prompt and aspect at 4K) or Vary (the same prompt, aspect and tier) one
        image of a finished result, that image as the single reference, charged to whoever pressed
        through the one launch path. The image is fetched from the hub (`bot.source_images`), not
        from this message, so the button works after a restart and after Discord's URLs expired."""
        if job.private and job.user_id != interaction.user.id:  # only its author ever saw it
            raise Denied("denied.job_not_found")
        if job.status not in (JobStatus.SUCCEEDED, JobStatus.POSTED) or not job.result_urls:
            raise Denied("denied.source_not_finished")
        if not 1 <= image <= len(job.result_urls):
            raise Denied("denied.source_image_missing", image=image)
        p = job.params
        reference = Attachment(
            url=job.result_urls[image - 1],
            filename=f"job-{job.id}-image-{image}.png",
            size=0,  # unknown until downloaded; checked by its bytes like any reference
            hub_image=(job.id, image),
        )
        request = ImagineRequest(
            guild_id=job.guild_id,
            channel_id=interaction.channel_id or job.channel_id,
            user_id=interaction.user.id,
            role_ids=member_roles(interaction),
            prompt=p.prompt,
            model=p.model,
            aspect=p.aspect,
            resolution=UPSCALE_TIER if action is SourceAction.UPSCALE else p.tier,
            quality=p.quality,
            count=1,
            attachments=(reference,),
            is_moderator=is_moderator(interaction),
            source=JobSource(job.id, action, image),
        )
        await launch(self.bot, interaction, request)

    async def _reference(self, interaction: discord.Interaction, job: Job) -> None:
        """A form for a new prompt; this result's images are the references."""
        refs = image_attachments(interaction.message) if interaction.message else ()
        if not refs:
            raise Denied("denied.no_images_left")
        await interaction.response.send_modal(
            ImagineModal(self.bot, messages.words(interaction.locale), refs, from_result=True)
        )

    async def _delete(self, interaction: discord.Interaction, job: Job) -> None:
        """Only the member who asked, or a moderator, may delete a result."""
        if not may_act_on(interaction, job):
            raise Denied("denied.delete_not_allowed")
        await interaction.response.defer()
        if interaction.message is not None:
            await interaction.message.delete()

    async def _info(self, interaction: discord.Interaction, job: Job) -> None:
        """The full prompt and settings, with a copyable /imagine line; only for the presser."""
        embed, line = embeds.info_embed(messages.words(interaction.locale), job)
        if line is None:
            await interaction.response.send_message(embed=embed, ephemeral=True)
            return
        file = discord.File(io.BytesIO(line.encode()), filename=f"imagine-{job.id}.txt")
        await interaction.response.send_message(embed=embed, file=file, ephemeral=True)

    async def _cancel(self, interaction: discord.Interaction, job: Job) -> None:
        """Cancel a job that hasn't reached the hub: its reservation goes back in full.

        A compare-and-set on the status (`update_if`), so a press racing the engine either
        cancels before the submission starts (the engine then loses its lease and stops) or
        finds the job already sent, whose credits are spent.
        """
        services = self.bot.services
        if not may_act_on(interaction, job):
            raise Denied("denied.cancel_not_allowed")
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
                raise Denied("denied.cancel_too_late")
            if current.status is JobStatus.CANCELLED:
                raise Denied("denied.cancel_already_cancelled")
            raise Denied("denied.cancel_finished")
        services.references.discard(job.id)
        returned = 0
        if cancelled.reservation_id is not None:
            returned = await services.quotas.ledger.release(cancelled.reservation_id)
        log.info(
            kv("job.cancelled", job=job.id, guild=job.guild_id, by=interaction.user.id, returned=returned)
        )
        services.queue_runner.changed(job.guild_id)
        services.engine.wake()
        await interaction.response.edit_message(
            # The status message is public: it keeps the job's language.
            embed=embeds.cancelled_embed(
                messages.words(job.locale), cancelled, returned, interaction.user.id
            ),
            view=None,
        )


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(JobActions(bot))
    bot.add_dynamic_items(JobButton)
