"""The hub's model list, cached: /imagine autocompletes from it on every keystroke."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot.hub import HubError, HubModel
from bot.logs import kv

log = logging.getLogger(__name__)


class ModelCatalog:
    """Fetches the model list at most once per `ttl`; serves the stale list if the hub is down."""

    def __init__(self, fetch: Callable[[], Awaitable[list[HubModel]]], ttl: float = 600.0) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._models: list[HubModel] = []
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def models(self) -> list[HubModel]:
        if time.monotonic() - self._fetched_at < self._ttl:
            return self._models
        async with self._lock:
            if time.monotonic() - self._fetched_at < self._ttl:
                return self._models
            try:
                self._models = await self._fetch()
                self._fetched_at = time.monotonic()
            except HubError as exc:
                log.warning(kv("catalog.refresh_failed", error=exc.code))
                if not self._models:
                    raise
                self._fetched_at = time.monotonic() - self._ttl + 30  # try again soon
        return self._models

    def invalidate(self) -> None:
        """Forget the cached list; the next call fetches it again."""
        self._fetched_at = float("-inf")

    def cached(self) -> list[HubModel]:
        """What is known now, without I/O (for autocomplete)."""
        return self._models

    async def find(self, model_id: str) -> HubModel | None:
        return next((m for m in await self.models() if m.id == model_id), None)
