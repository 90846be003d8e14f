"""Reads by key, run as one read for every key asked meanwhile.

Every /imagine reads its member's settings and personal key (and its server's, when their cache
expired). The stores cache those reads, but a burst from members not seen yet misses the cache
once per member: on PostgreSQL each miss was a pooled connection (opened on the spot when the
pool ran short), a ping, a statement and a rollback, and 100 new members at once held the event
loop for the first 200 ms of the burst. (Likewise each queued launch read its server's whole queue
to show its place.) Here a key asked while a read is under way waits for the next read, which
fetches every key asked meanwhile (the stores: in one statement): one read per store is in
flight at a time, and a key asked twice is read once.

A read always starts after the `get` that asked for it, so a value is never older than the call
(the stores' rule for a write racing a read still holds).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeyedReads(Generic[K, V]):
    """`get(key)` through `fetch(keys)`, which returns the value of each key it found; `missing`
    is the value of a key it did not find."""

    MAX_KEYS = 200  # per statement: bounded, far below any driver's limit on parameters

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]], missing: V) -> None:
        self._fetch = fetch
        self._missing = missing
        self._asked: dict[K, asyncio.Future[V]] = {}  # keys for the next read
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        future = self._asked.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._asked[key] = future
            if self._reader is None:  # starts next turn: keys asked in this one join it
                self._reader = asyncio.create_task(self._read())
        # Shielded: one caller giving up must not cancel the value others wait for.
        return await asyncio.shield(future)

    async def _read(self) -> None:
        batch: dict[K, asyncio.Future[V]] = {}
        try:
            while self._asked:
                keys = list(itertools.islice(self._asked, self.MAX_KEYS))
                batch = {key: self._asked.pop(key) for key in keys}
                try:
                    found = await self._fetch(keys)
                except Exception as exc:  # each caller hears it (and may retry)
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # retrieved: callers that gave up log nothing
                    continue
                for key, future in batch.items():
                    if not future.done():
                        future.set_result(found.get(key, self._missing))
        finally:
            self._reader = None
            for future in itertools.chain(batch.values(), self._asked.values()):
                future.cancel()  # only those still waiting: the reader itself was cancelled
            self._asked.clear()
