"""The in-memory reference cache is bounded (oldest evicted first, and by age) and forgets jobs that end."""

from __future__ import annotations

from bot.hub import Reference
from bot.references import Attachment, ReferenceCache


async def _never(_: Attachment) -> bytes:
    raise AssertionError("not expected to download")


def _refs(size: int) -> list[Reference]:
    return [Reference(data=b"x" * size, filename="a.png", content_type="image/png")]


def test_cache_evicts_the_oldest_past_its_cap_and_discard_frees_it() -> None:
    cache = ReferenceCache(_never, max_bytes=100)
    cache.put(1, _refs(60))
    cache.put(2, _refs(60))  # past the cap: the oldest entry goes (it is downloaded again if needed)
    assert cache._bytes == 60 and set(cache._by_job) == {2}
    cache.put(3, _refs(30))
    assert cache._bytes == 90 and set(cache._by_job) == {2, 3}
    cache.put(4, _refs(101))  # bigger than the whole cache: not held, nothing evicted
    assert set(cache._by_job) == {2, 3}
    cache.discard(2)
    cache.discard(2)  # idempotent
    cache.discard(3)
    assert cache._bytes == 0 and not cache._by_job


def test_entries_older_than_the_max_age_are_dropped() -> None:
    cache = ReferenceCache(_never, max_bytes=100, max_age=0.0)
    cache.put(1, _refs(10))
    cache.put(2, _refs(10))  # 1 has expired by now
    assert set(cache._by_job) == {2} and cache._bytes == 10
