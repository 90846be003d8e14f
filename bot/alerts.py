"""Low hub balance alerts: one moderator-log alert when a server's balance falls below its
threshold, not one per job; re-armed once the balance is back at or above it.

The balance comes with every finished generation the hub returns (`Generation.balance`), so
the server's hub clients (`bot.services.HubClients`) are `WatchedHubClient`s that hand it to
the `BalanceWatcher`. "Alerted" is a flag in the server's settings, set by an atomic
compare-and-set, so only one process (and one job) ever announces a given low balance.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.guild_settings import GuildSettingsStore
from bot.hub import Generation, HubClient, Reference
from bot.logs import kv

log = logging.getLogger(__name__)

# (guild_id, credits, threshold) -> posts the alert
LowBalanceNotify = Callable[[int, int, int], Awaitable[None]]


class BalanceWatcher:
    """See the module docstring. `notify` is set by the Discord side."""

    def __init__(self, settings: GuildSettingsStore, notify: LowBalanceNotify | None = None) -> None:
        self.settings = settings
        self.notify = notify

    async def observe(self, guild_id: int, credits: int) -> bool:
        """Note the server's balance; True when this call raised the alert."""
        config = await self.settings.get(guild_id)
        threshold = config.low_balance_threshold
        if threshold is None:
            return False
        if credits >= threshold:
            if config.low_balance_alerted:
                await self.settings.mark_low_balance_alerted(guild_id, False)
                log.info(kv("alerts.balance_recovered", guild=guild_id, credits=credits))
            return False
        if config.low_balance_alerted or not await self.settings.mark_low_balance_alerted(guild_id, True):
            return False
        log.warning(kv("alerts.low_balance", guild=guild_id, credits=credits, threshold=threshold))
        if self.notify is not None:
            try:
                await self.notify(guild_id, credits, threshold)
            except Exception as exc:
                log.warning(kv("alerts.notify_failed", guild=guild_id, error=type(exc).__name__))
        return True

    async def observe_generation(self, guild_id: int, generation: Generation) -> None:
        """`observe` the balance a succeeded generation came with; never raises."""
        balance = generation.balance
        if not generation.succeeded or balance is None or balance.credits is None:
            return
        try:
            await self.observe(guild_id, int(balance.credits))
        except Exception:
            log.exception(kv("alerts.observe_failed", guild=guild_id))


class WatchedHubClient(HubClient):
    """A server's hub client that shows every generation it gets back to a `BalanceWatcher`."""

    def __init__(self, *args: Any, guild_id: int, watcher: BalanceWatcher, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guild_id = guild_id
        self.watcher = watcher

    @classmethod
    def wrap(cls, client: HubClient, *, guild_id: int, watcher: BalanceWatcher) -> WatchedHubClient:
        """The same client (same key, session and settings), watched."""
        watched = cls.__new__(cls)
        watched.__dict__.update(client.__dict__)
        watched.guild_id = guild_id
        watched.watcher = watcher
        return watched

    async def get_generation(self, generation_id: str) -> Generation:
        generation = await super().get_generation(generation_id)
        await self.watcher.observe_generation(self.guild_id, generation)
        return generation

    async def generate(
        self,
        *,
        model: str,
        prompt: str,
        size: str | None = None,
        quality: str | None = None,
        n: int = 1,
        references: Sequence[Reference] = (),
        async_: bool = True,
    ) -> Generation:
        generation = await super().generate(
            model=model,
            prompt=prompt,
            size=size,
            quality=quality,
            n=n,
            references=references,
            async_=async_,
        )
        await self.watcher.observe_generation(self.guild_id, generation)
        return generation
