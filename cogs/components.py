"""Buttons on status and result messages: custom ids, the `JobButton` item and the views.

Buttons are `DynamicItem`s with stable custom ids (`imagine:<action>:<job>`, and for the per-image
Upscale and Vary `imagine:<action>:<job>:<image>`, the image numbered from 1), so they keep working
after a restart without any view being re-registered per message (and the client keeps no view
per message: memory stays flat). What a press does is the `cogs.buttons` extension's (found as
the `JobActions` cog); this module only names, draws and routes the buttons. Errors go to the one
error path (`cogs.errors.report`).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Protocol, runtime_checkable

import discord
from discord.ext import commands

from bot.jobs import Job
from cogs import errors
from cogs.messages import Words

ACTIONS = ("reroll", "reference", "delete", "info", "cancel", "upscale", "vary")
RESULT_ACTIONS = ("reroll", "reference", "info", "delete")
# One button per image, on a row of their own: U1…U4 on the second row, V1…V4 on the third.
IMAGE_ACTIONS = {"upscale": 1, "vary": 2}
MAX_IMAGE_BUTTONS = 5  # Discord's buttons per row


def custom_id(action: str, job_id: int, image: int | None = None) -> str:
    return f"imagine:{action}:{job_id}" if image is None else f"imagine:{action}:{job_id}:{image}"


@runtime_checkable
class JobActions(Protocol):
    """What a press of a job's button does (the `cogs.buttons` cog, registered as "JobActions")."""

    async def press(
        self, interaction: discord.Interaction, action: str, job_id: int, image: int | None = None
    ) -> None: ...


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"imagine:(?P<action>[a-z]+):(?P<job>\d{1,20})(?::(?P<image>\d{1,2}))?",
):
    """One class for every job button; the action (and for per-image ones, the image) is part of
    the custom id."""

    STYLES: ClassVar[dict[str, tuple[str, discord.ButtonStyle]]] = {
        "reroll": ("🎲", discord.ButtonStyle.primary),
        "reference": ("🖼️", discord.ButtonStyle.secondary),
        "delete": ("🗑️", discord.ButtonStyle.danger),
        "info": ("ℹ️", discord.ButtonStyle.secondary),
        "cancel": ("✖️", discord.ButtonStyle.danger),
    }

    def __init__(self, action: str, job_id: int, w: Words | None = None, image: int | None = None) -> None:
        emoji, style = self.STYLES.get(action, (None, discord.ButtonStyle.secondary))
        # A press is routed through a button rebuilt from its custom id alone: no label is drawn then.
        label, row = None, None
        if image is not None:
            label = w(f"button.{action}", image=image) if w is not None else None
            row = IMAGE_ACTIONS.get(action)
        elif w is not None and action in self.STYLES:
            label = w(f"button.{action}")
        super().__init__(
            discord.ui.Button(
                label=label, emoji=emoji, style=style, custom_id=custom_id(action, job_id, image), row=row
            )
        )
        self.action = action
        self.job_id = job_id
        self.image = image

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        image = match["image"]
        return cls(match["action"], int(match["job"]), image=int(image) if image is not None else None)

    async def callback(self, interaction: discord.Interaction) -> None:
        client = interaction.client
        actions = client.get_cog("JobActions") if isinstance(client, commands.bot.BotBase) else None
        try:
            if not isinstance(actions, JobActions):
                raise errors.Denied("denied.button_unsupported")
            await actions.press(interaction, self.action, self.job_id, self.image)
        except Exception as exc:
            await errors.report(interaction, exc)


def result_view(w: Words, job: Job) -> discord.ui.View:
    """A result's buttons, labelled in the language of the message they go on: the job's on the
    first row; with images on the hub, Upscale and Vary for each one (U1…, V1…) on the next two
    (within Discord's 5 rows of 5 buttons)."""
    view = discord.ui.View(timeout=None)
    for action in RESULT_ACTIONS:
        view.add_item(JobButton(action, job.id, w))
    images = min(len(job.result_urls), MAX_IMAGE_BUTTONS)
    for action in IMAGE_ACTIONS:
        for image in range(1, images + 1):
            view.add_item(JobButton(action, job.id, w, image))
    return view


def status_view(w: Words, job: Job) -> discord.ui.View:
    """The status message's button while the job has not reached the hub."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id, w))
    return view
