"""/history and /show: a member's recent generations, and a past result posted again.

/history answers only the member (their language); /show posts publicly (the server's language).
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.history import ShowLimits, fetch_result
from bot.jobs import JobStatus
from bot.logs import kv
from cogs import attachments, embeds, messages
from cogs.checks import in_guild, may_look_at, may_see_job
from cogs.client import ImageHubBot
from cogs.components import result_view
from cogs.errors import Denied
from cogs.messages import channel_list

log = logging.getLogger(__name__)

HISTORY_LIMIT = 10


class History(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot
        self.limits = ShowLimits()  # /show downloads up to 4 x 60 MB: bounded

    @app_commands.command(name="history", description="Your recent generations (others: Manage Server)")
    @app_commands.guild_only()
    @app_commands.describe(member="Another member (needs Manage Server)")
    async def history(self, interaction: discord.Interaction, member: discord.Member | None = None) -> None:
        here = in_guild(interaction)
        may_look_at(interaction, member)
        target = member.id if member is not None else interaction.user.id
        jobs = await self.bot.services.jobs.list_for_member(here.guild_id, target, HISTORY_LIMIT)
        embed = embeds.history_embed(messages.words(interaction.locale), target, jobs)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="show", description="Post a past result of this server again, with buttons")
    @app_commands.guild_only()
    @app_commands.describe(job_id="The job number (in a result's footer, or from /history)")
    async def show(
        self, interaction: discord.Interaction, job_id: app_commands.Range[int, 1, 2**53 - 1]
    ) -> None:
        here = in_guild(interaction)
        services = self.bot.services
        job = await services.jobs.get(job_id, guild_id=here.guild_id)
        if job is None:
            raise Denied("denied.show_not_found")
        if not await may_see_job(interaction, job):
            raise Denied("denied.show_private")
        if job.private and job.user_id != interaction.user.id:  # results only its author sees
            raise Denied("denied.show_private_result")
        # Posted, or made and paid for but never posted (e.g. the bot lacked Send Messages): either
        # way the hub's images are there to post again.
        unposted = job.status is JobStatus.FAILED and (job.last_error or "").startswith("publish:")
        if not (job.status is JobStatus.POSTED or unposted) or not job.result_urls:
            raise Denied("denied.show_no_images")
        config = await services.guilds.get(here.guild_id)
        if not config.channel_allowed(here.channel_id):
            raise Denied("denied.show_channel", channels=channel_list(config.allowed_channel_ids))
        # A private result is shown again to its author alone: in their language, like the first time.
        if job.private:
            public = messages.words(interaction.locale)
        else:
            public = messages.words(messages.public_locale(config.language, interaction.guild_locale))
        slot = self.limits.claim(here.guild_id, interaction.user.id)  # a Refusal when busy
        with slot:  # held until the images are posted: they are in memory until then
            await interaction.response.defer(thinking=True, ephemeral=job.private)
            result = await fetch_result(services.hubs.downloader(), job, services.timings)
            files, links = attachments.result_files(job, result, interaction.filesize_limit)
            if not files and not links:
                await interaction.followup.send(embed=embeds.refusal(public("denied.show_gone")))
                return
            embed = embeds.result_embed(public, job, result, links)
            log.info(kv("history.show", guild=job.guild_id, job=job.id, user=interaction.user.id))
            await interaction.followup.send(
                content=public("result.reshown", job=job.id),
                embed=embed,
                files=files,
                view=result_view(public, job),
                allowed_mentions=embeds.NO_MENTIONS,
                ephemeral=job.private,
            )


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(History(bot))
