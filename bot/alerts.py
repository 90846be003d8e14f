"""Low hub balance alerts: one moderator-log alert when a server's balance falls below its
threshold, not one per job; re-armed once the balance is back at or above it.

The balance comes with every generation the hub returns (`Generation.balance`): the engine's
steps show each one to the `BalanceWatcher` and post the alert it raises (through the
publisher). "Alerted" is a flag in the server's settings, set by an atomic compare-and-set, so
only one process (and one job) ever announces a given low balance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.guild_settings import GuildSettingsStore
from bot.hub import Generation
from bot.logs import kv

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LowBalance:
    """An alert to give: the server's balance and the threshold it fell below."""

    guild_id: int
    credits: int
    threshold: int


class BalanceWatcher:
    """See the module docstring."""

    def __init__(self, settings: GuildSettingsStore) -> None:
        self.settings = settings

    async def observe(self, guild_id: int, credits: int) -> LowBalance | None:
        """Note the server's balance; the alert when this call raised it (else None)."""
        config = await self.settings.get(guild_id)
        threshold = config.low_balance_threshold
        if threshold is None:
            return None
        if credits >= threshold:
            if config.low_balance_alerted:
                await self.settings.mark_low_balance_alerted(guild_id, False)
                log.info(kv("alerts.balance_recovered", guild=guild_id, credits=credits))
            return None
        if config.low_balance_alerted or not await self.settings.mark_low_balance_alerted(guild_id, True):
            return None
        log.warning(kv("alerts.low_balance", guild=guild_id, credits=credits, threshold=threshold))
        return LowBalance(guild_id, credits, threshold)

    async def observe_generation(self, guild_id: int, generation: Generation) -> LowBalance | None:
        """`observe` the balance a succeeded generation came with; never raises."""
        balance = generation.balance
        if not generation.succeeded or balance is None or balance.credits is None:
            return None
        try:
            return await self.observe(guild_id, int(balance.credits))
        except Exception:
            log.exception(kv("alerts.observe_failed", guild=guild_id))
            return None
