"""/history and /show: a member's recent generations, and a past result posted again."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.history import fetch_result
from bot.jobs import Job, JobStatus
from bot.logs import kv
from cogs import render
from cogs.imagine import is_moderator
from cogs.info import may_look_at
from cogs.views import result_view

if TYPE_CHECKING:
    from bot.client import ImageHubBot

log = logging.getLogger(__name__)

HISTORY_LIMIT = 10


def may_see_job(interaction: discord.Interaction, job: Job) -> bool:
    """Job ids are sequential: only the author, a moderator, or a member who can view the job's
    channel (from the guild cache; an unknown channel counts as not viewable) may see its result."""
    if job.user_id == interaction.user.id or is_moderator(interaction):
        return True
    guild = interaction.guild
    member = interaction.user
    if guild is None or not isinstance(member, discord.Member):
        return False
    channel = guild.get_channel_or_thread(job.channel_id)
    return channel is not None and channel.permissions_for(member).view_channel


class History(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot

    @app_commands.command(name="history", description="Your recent generations (others: Manage Server)")
    @app_commands.guild_only()
    @app_commands.describe(member="Another member (needs Manage Server)")
    async def history(self, interaction: discord.Interaction, member: discord.Member | None = None) -> None:
        assert interaction.guild_id is not None
        if not await may_look_at(interaction, member):
            return
        target = member.id if member is not None else interaction.user.id
        jobs = await self.bot.services.jobs.list_for_member(interaction.guild_id, target, HISTORY_LIMIT)
        await interaction.response.send_message(embed=render.history_embed(target, jobs), ephemeral=True)

    @app_commands.command(name="show", description="Post a past result of this server again, with buttons")
    @app_commands.guild_only()
    @app_commands.describe(job_id="The job number (in a result's footer, or from /history)")
    async def show(
        self, interaction: discord.Interaction, job_id: app_commands.Range[int, 1, 2**53 - 1]
    ) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        services = self.bot.services
        job = await services.jobs.get(job_id, guild_id=interaction.guild_id)
        if job is None:
            await interaction.response.send_message(
                embed=render.refusal(render.SHOW_NOT_FOUND), ephemeral=True
            )
            return
        if not may_see_job(interaction, job):
            await interaction.response.send_message(embed=render.refusal(render.SHOW_PRIVATE), ephemeral=True)
            return
        # Posted, or made and paid for but never posted (e.g. the bot lacked Send Messages): either
        # way the hub's images are there to post again.
        unposted = job.status is JobStatus.FAILED and (job.last_error or "").startswith("publish:")
        if not (job.status is JobStatus.POSTED or unposted) or not job.result_urls:
            await interaction.response.send_message(
                embed=render.refusal(render.SHOW_NO_IMAGES), ephemeral=True
            )
            return
        config = await services.guilds.get(interaction.guild_id)
        if not config.channel_allowed(interaction.channel_id):
            channels = ", ".join(f"<#{c}>" for c in config.allowed_channel_ids)
            await interaction.response.send_message(
                embed=render.refusal(f"Results can be posted in {channels}."), ephemeral=True
            )
            return
        await interaction.response.defer(thinking=True)
        result = await fetch_result(services.hubs.anonymous(), job)
        files, links = render.result_files(job, result, interaction.filesize_limit)
        if not files and not links:
            await interaction.followup.send(embed=render.refusal(render.SHOW_GONE))
            return
        embed = render.result_embed(job, result, links)
        log.info(kv("history.show", guild=job.guild_id, job=job.id, user=interaction.user.id))
        await interaction.followup.send(
            content=render.reshown_note(job),
            embed=embed,
            files=files,
            view=result_view(job),
            allowed_mentions=discord.AllowedMentions.none(),
        )


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(History(bot))
