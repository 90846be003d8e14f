"""Process entry: logging, services, the client, health, and a clean stop on SIGTERM/SIGINT.

`python -m bot` ends here (`bot.__main__` → `run`): the one place that builds the `Services`
(`bot.services`) and hands them to the Discord client, and the one that turns a refused token
or command sync (or a missing message catalog) into a one-line exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal

import discord
from discord import app_commands

from bot import metrics
from bot.config import Settings
from bot.health import HealthServer
from bot.logs import kv, setup_logging
from bot.services import Services
from cogs import i18n, messages
from cogs.client import ImageHubBot

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    services = await Services.open(settings)
    options: dict[str, object] = {}
    if settings.shard_count is not None:
        options["shard_count"] = settings.shard_count
    if settings.shard_id_list is not None:
        options["shard_ids"] = settings.shard_id_list
    bot = ImageHubBot(services, **options)
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, _stop, bot, sig, stopping)
    health = None
    if settings.metrics_port is not None:

        async def gateway() -> bool:
            shards = bot.shards.values()
            return bool(shards) and not bot.is_closed() and all(not shard.is_closed() for shard in shards)

        async def scheduler() -> bool:
            return services.engine.alive()

        checks = {"gateway": gateway, "database": services.db.ping, "scheduler": scheduler}
        health = HealthServer(settings.metrics_port, checks=checks)
        await health.start()
    lag = (
        asyncio.create_task(metrics.sample_loop_lag(), name="loop-lag")
        if settings.loop_lag_sampling
        else None
    )
    assert settings.discord_token is not None
    # What exists now lives as long as the process (modules, services, the client): full garbage
    # collections need not walk it again. Each walk took 50-90 ms, a pause that every member whose
    # /imagine was in flight waited out (most of a burst's p99 answer time). Garbage goes first.
    gc.collect()
    gc.freeze()
    try:
        await bot.start(settings.discord_token.get_secret_value())
    finally:
        # `start` returns as soon as the gateway is closed, while the signal's clean close may still
        # be closing the database: let it finish (asyncio.run would cancel it halfway, which can
        # hang on a half-closed connection until the process is killed).
        if stopping:
            await asyncio.gather(*stopping, return_exceptions=True)
        if not bot.is_closed():
            await bot.close()
        if lag is not None:
            lag.cancel()
        if health is not None:
            await health.stop()


def _stop(bot: discord.Client, sig: signal.Signals, stopping: set[asyncio.Task[None]]) -> None:
    log.info(kv("bot.stopping", signal=sig.name))
    stopping.add(asyncio.get_running_loop().create_task(bot.close()))


def run(settings: Settings) -> int:
    setup_logging(settings.log_level)
    try:
        messages.load_languages()  # a broken install stops here, before anything connects
    except i18n.CatalogMissing as exc:
        log.error(str(exc))
        return 4
    try:
        asyncio.run(serve(settings))
    except discord.LoginFailure:
        log.error("DISCORD_TOKEN was refused by Discord: copy the bot token again from the developer portal")
        return 2
    except app_commands.CommandSyncFailure as exc:
        # discord.py names the command, the option and Discord's message over several lines.
        log.error(
            "Discord refused the command sync: " + " / ".join(line.strip() for line in str(exc).splitlines())
        )
        return 3
    except KeyboardInterrupt:
        pass
    return 0
