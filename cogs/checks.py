"""Who may do what: every permission rule of the bot, evaluated on server-wide permissions.

`interaction.permissions` are the channel's: Manage Messages granted by an overwrite on one
channel must not make a member a moderator of the whole server, so every rule here reads the
member's roles (or ownership) only. Discord's `default_permissions` on a command can be changed
by a server's admins, so the bot checks again itself: `manage_server()` as a decorator on a
command, `require_manage_server()` inside one (or a form) when it depends on an option.
A failed check raises `CheckDenied`, which `cogs.errors` tells the member.

`in_guild(interaction)` is where a guild-only command happens, typed: the server, the channel and
the member, which Discord always sends for these commands (so commands need no asserts);
`where(interaction)` is the scope of a command that also works in DMs and where only the member
installed the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import discord
from discord import app_commands

from bot.jobs import Job
from bot.scopes import personal_scope
from cogs.errors import CheckDenied

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InGuild:
    """Where a guild-only interaction happens."""

    guild_id: int
    channel_id: int
    member: discord.Member


def in_guild(interaction: discord.Interaction) -> InGuild:
    """The server, channel and member of an interaction of a guild-only command or of a button or
    form on a server's message; `CheckDenied` anywhere else (Discord sends them nowhere else)."""
    user = interaction.user
    if interaction.guild_id is None or interaction.channel_id is None or not isinstance(user, discord.Member):
        raise CheckDenied("denied.guild_only")
    return InGuild(interaction.guild_id, interaction.channel_id, user)


@dataclass(frozen=True, slots=True)
class Where:
    """Where an interaction of a command that also works in DMs happens: its scope (`bot.scopes`:
    the server, or the member's own space when there is no server or the bot isn't installed in
    it, i.e. `authorizing_integration_owners` has no server key) and its channel."""

    scope: int
    channel_id: int
    personal: bool


def where(interaction: discord.Interaction) -> Where:
    """See `Where`. In the member's own space nothing of a server applies (roles, moderation)."""
    channel_id = interaction.channel_id or 0
    if interaction.guild_id is not None and interaction.is_guild_integration():
        return Where(interaction.guild_id, channel_id, personal=False)
    return Where(personal_scope(interaction.user.id), channel_id, personal=True)


def server_permissions(interaction: discord.Interaction) -> discord.Permissions:
    """The member's server-wide permissions (roles, or owner), without any channel overwrite."""
    user = interaction.user
    return user.guild_permissions if isinstance(user, discord.Member) else discord.Permissions.none()


def member_roles(interaction: discord.Interaction) -> tuple[int, ...]:
    user = interaction.user
    return tuple(role.id for role in user.roles) if isinstance(user, discord.Member) else ()


def is_moderator(interaction: discord.Interaction) -> bool:
    """Manage Server, Manage Messages or Administrator, server-wide."""
    perms = server_permissions(interaction)
    return perms.manage_guild or perms.manage_messages or perms.administrator


def has_manage_server(interaction: discord.Interaction) -> bool:
    perms = server_permissions(interaction)
    return perms.manage_guild or perms.administrator


def require_manage_server(interaction: discord.Interaction) -> None:
    """`CheckDenied` unless the member manages the server."""
    if not has_manage_server(interaction):
        raise CheckDenied("denied.manage_server")


def manage_server() -> Callable[[T], T]:
    """A command only members who manage the server may use (checked by the bot, not only by
    Discord's defaults)."""

    def predicate(interaction: discord.Interaction) -> bool:
        require_manage_server(interaction)
        return True

    return app_commands.check(predicate)


def may_look_at(interaction: discord.Interaction, member: discord.Member | None) -> None:
    """Anyone may look at themselves; looking at another member needs Manage Server."""
    if member is not None and member.id != interaction.user.id:
        require_manage_server(interaction)


def may_act_on(interaction: discord.Interaction, job: Job) -> bool:
    """The member who asked for the job, or a moderator (cancel, delete)."""
    return interaction.user.id == job.user_id or is_moderator(interaction)


async def may_see_job(interaction: discord.Interaction, job: Job) -> bool:
    """Job ids are sequential: the member must be able to view the job's channel, whoever they
    are (author and moderators included: re-posting shows its prompt and images where others
    can see them), and be in it when it is a private thread (unless they manage its threads).
    A channel the bot can't find counts as not viewable."""
    guild = interaction.guild
    member = interaction.user
    if guild is None or not isinstance(member, discord.Member):
        return False
    channel = guild.get_channel_or_thread(job.channel_id)
    if channel is None:  # e.g. an archived thread, not in the cache
        try:
            fetched = await guild.fetch_channel(job.channel_id)
        except discord.HTTPException:
            return False
        if not isinstance(fetched, discord.abc.GuildChannel | discord.Thread):
            return False
        channel = fetched
    try:
        if not channel.permissions_for(member).view_channel:
            return False
    except discord.ClientException:  # a thread whose parent isn't known
        return False
    if isinstance(channel, discord.Thread) and channel.type is discord.ChannelType.private_thread:
        parent = channel.parent
        if parent is not None and parent.permissions_for(member).manage_threads:
            return True
        try:
            await channel.fetch_member(member.id)
        except discord.HTTPException:  # 404: not in the thread (any other error: fail closed)
            return False
    return True
