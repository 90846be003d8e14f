"""The in-memory reference cache is bounded and forgets jobs that end."""

from __future__ import annotations

from bot.hub import Reference
from bot.imagine import Attachment, ReferenceCache


async def _never(_: Attachment) -> bytes:
    raise AssertionError("not expected to download")


def _refs(size: int) -> list[Reference]:
    return [Reference(data=b"x" * size, filename="a.png", content_type="image/png")]


def test_cache_stops_holding_past_its_cap_and_discard_frees_it() -> None:
    cache = ReferenceCache(_never, max_bytes=100)
    cache.put(1, _refs(60))
    cache.put(2, _refs(60))  # would pass the cap: not held (downloaded again at submission)
    assert cache._bytes == 60 and set(cache._by_job) == {1}
    cache.discard(1)
    cache.put(2, _refs(60))
    assert cache._bytes == 60 and set(cache._by_job) == {2}
    cache.discard(2)
    cache.discard(2)  # idempotent
    assert cache._bytes == 0 and not cache._by_job
