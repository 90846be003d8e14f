"""The one error path of every command, button and form: what went wrong, told once, in words.

Cogs raise: a `Refusal` of the core (by its reason code), a `Denied` of the adapter's own (by its
catalog key), a `HubError` (the hub's answer, for members), a check failure (`cogs.checks`);
anything else is a bug, logged with its traceback and told as "something went wrong". `report`
renders it in the member's language (`interaction.locale`: every answer here is ephemeral) and
decides once how to answer: the interaction's first response while there is none, else an
ephemeral followup. It is installed as the command tree's `on_error` by the client;
buttons (`JobButton`) and forms (`cogs.forms`) send their errors here too.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from bot.hub import HubError
from bot.logs import kv
from bot.refusals import Refusal
from cogs import embeds, messages

log = logging.getLogger(__name__)


class Denied(Exception):
    """The adapter turns a request down (no such job here, a missing option, not the author):
    `key` names its text in `cogs.messages`, with `params` for its fields. Nothing changed."""

    def __init__(self, key: str, /, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


class CheckDenied(app_commands.CheckFailure):
    """A permission check failed (`cogs.checks`); `key` names its text in `cogs.messages`."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def describe(w: messages.Words, error: BaseException) -> str | None:
    """What to tell the member about `error` in `w`'s language, or None when it is a bug of ours."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, Refusal):
        return messages.refusal(w, error)
    if isinstance(error, Denied):
        return w(error.key, **error.params)
    if isinstance(error, CheckDenied):
        return w(error.key)
    if isinstance(error, HubError):
        return messages.hub_error(w, error)
    return None


async def reply(interaction: discord.Interaction, embed: discord.Embed) -> None:
    """Answer only to the member: the first response while there is none, else a followup."""
    if interaction.response.is_done():
        await interaction.followup.send(embed=embed, ephemeral=True)
    else:
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def report(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the member what went wrong, in their language (see the module docstring); never raises."""
    w = messages.words(interaction.locale)
    said = describe(w, error)
    if said is None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        what = interaction.command.name if interaction.command is not None else _custom_id(interaction)
        log.error(kv("interaction.failed", what=what, error=type(original).__name__), exc_info=original)
        said = w("error.unexpected")
    try:
        await reply(interaction, embeds.refusal(said))
    except discord.HTTPException as exc:
        log.info(kv("interaction.error_reply_failed", status=exc.status))


def _custom_id(interaction: discord.Interaction) -> str | None:
    """The pressed button's or sent form's custom id (ours, never member text)."""
    data: dict[str, Any] = dict(interaction.data or {})
    custom_id = data.get("custom_id")
    return custom_id if isinstance(custom_id, str) else None


async def on_app_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """The command tree's error handler (installed by `cogs.client`)."""
    await report(interaction, error)
