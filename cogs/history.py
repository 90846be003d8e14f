"""/history and /show: a member's recent generations, and a past result posted again."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.history import ShowBusy, ShowLimits, fetch_result
from bot.jobs import Job, JobStatus
from bot.logs import kv
from cogs import render
from cogs.info import may_look_at
from cogs.views import result_view

if TYPE_CHECKING:
    from bot.client import ImageHubBot

log = logging.getLogger(__name__)

HISTORY_LIMIT = 10


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


class History(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot
        self.limits = ShowLimits()  # /show downloads up to 4 x 60 MB: bounded

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
        if not await may_see_job(interaction, job):
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
        try:
            slot = self.limits.claim(interaction.guild_id, interaction.user.id)
        except ShowBusy as busy:
            await interaction.response.send_message(
                embed=render.refusal(render.SHOW_BUSY[busy.reason.value]), ephemeral=True
            )
            return
        with slot:  # held until the images are posted: they are in memory until then
            await interaction.response.defer(thinking=True)
            result = await fetch_result(services.hubs.downloader(), job, services.timings)
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
