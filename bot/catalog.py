"""The hub's model list, cached: /imagine autocompletes from it on every keystroke.

Interactions must be answered within Discord's 3 s, so no caller ever waits for a slow hub:
a cached list is always served at once, and a stale one is refreshed by one background task
(errors logged, the old list kept). Only when nothing is cached yet does a caller wait for the
fetch, and then at most `deadline` seconds before `HubUnavailable`; the fetch itself goes on in
the background and fills the cache for the next caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot.hub import HubError, HubModel, HubUnavailable
from bot.logs import kv

log = logging.getLogger(__name__)


class ModelCatalog:
    """Refreshes the model list once it is `ttl` seconds old, in the background (see the module docstring).

    `deadline`: how long a caller waits when nothing is cached; `retry_after`: how soon a failed
    refresh is tried again while the old list is served.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[list[HubModel]]],
        ttl: float = 600.0,
        *,
        deadline: float = 2.0,
        retry_after: float = 30.0,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._deadline = deadline
        self._retry_after = retry_after
        self._models: list[HubModel] = []
        self._have = False  # a list was fetched (it may be empty)
        self._fetched_at = float("-inf")
        self._error: HubError | None = None  # why the last fetch failed
        self._generation = 0  # bumped by `invalidate`: a fetch started before it is not kept
        self._task: asyncio.Task[None] | None = None  # the current fetch
        self._tasks: set[asyncio.Task[None]] = set()  # every fetch still running (kept referenced)

    async def models(self) -> list[HubModel]:
        """The cached list (refreshed in the background when stale); with nothing cached, the hub's
        list if it arrives within `deadline`, else `HubUnavailable` (or the fetch's `HubError`)."""
        if self._have:
            if time.monotonic() - self._fetched_at >= self._ttl:
                self._start_refresh()
            return self._models
        task = self._start_refresh()
        try:
            async with asyncio.timeout(self._deadline):
                await asyncio.shield(task)  # a caller giving up never cancels the shared fetch
        except TimeoutError:
            raise HubUnavailable(
                f"the hub's model list did not arrive within {self._deadline:g}s", code="timeout"
            ) from None
        if self._have:
            return self._models
        error = self._error
        if error is None:
            raise HubUnavailable("the hub's model list could not be fetched")
        raise type(error)(error.message, status=error.status, code=error.code)

    def warm(self) -> asyncio.Task[None]:
        """Start fetching the list in the background (at start-up); the task never raises."""
        return self._start_refresh()

    def refreshing(self) -> asyncio.Task[None] | None:
        """The fetch under way, if any (it never raises)."""
        return self._task if self._task is not None and not self._task.done() else None

    def mark_stale(self) -> None:
        """Treat the cached list as out of date: still served, refreshed by the next call."""
        self._fetched_at = float("-inf")

    def invalidate(self) -> None:
        """Forget the cached list; the next call fetches it again (and waits for it)."""
        self._models = []
        self._have = False
        self._fetched_at = float("-inf")
        self._generation += 1
        self._task = None  # a fetch under way finishes, but its list is not kept

    def cached(self) -> list[HubModel]:
        """What is known now, without I/O (for autocomplete)."""
        return self._models

    async def find(self, model_id: str) -> HubModel | None:
        return next((m for m in await self.models() if m.id == model_id), None)

    async def close(self) -> None:
        """Stop the fetches under way (at shutdown)."""
        self._task = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start_refresh(self) -> asyncio.Task[None]:
        """The fetch under way, or a new one: one at a time."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._refresh(self._generation), name="model-catalog-refresh")
            self._tasks.add(self._task)
            self._task.add_done_callback(self._tasks.discard)
        return self._task

    async def _refresh(self, generation: int) -> None:
        try:
            models = await self._fetch()
        except HubError as exc:
            log.warning(kv("catalog.refresh_failed", error=exc.code, cached=len(self._models)))
            self._failed(generation, exc)
            return
        except Exception as exc:  # a bug must not kill the catalog: log it, keep serving
            log.exception(kv("catalog.refresh_failed", error=type(exc).__name__, cached=len(self._models)))
            reason = f"the hub's model list could not be fetched ({type(exc).__name__})"
            self._failed(generation, HubUnavailable(reason))
            return
        if generation != self._generation:
            return
        self._models = models
        self._have = True
        self._fetched_at = time.monotonic()
        self._error = None

    def _failed(self, generation: int, error: HubError) -> None:
        if generation != self._generation:
            return
        self._error = error
        if self._have:  # keep serving the old list; try again soon
            self._fetched_at = time.monotonic() - self._ttl + self._retry_after
