"""The model catalog never holds an interaction past Discord's 3 s: a stale list is served while it is
refreshed in the background; with nothing cached, a hanging hub gets a friendly refusal in time."""

from __future__ import annotations

import asyncio

from bot.jobs import JobStatus
from tests.bed import Bed

MODELS = "/api/v1/models"


async def test_a_stale_list_is_served_while_a_hanging_hub_is_asked_in_the_background(bed: Bed) -> None:
    catalog = bed.services.catalog
    await catalog.models()  # fetched earlier
    catalog.mark_stale()
    asked = len(bed.hub.requests_to(MODELS))
    bed.hub.hang_next(1, seconds=30, paths=[MODELS])

    loop = asyncio.get_running_loop()
    started = loop.time()
    it = await bed.imagine()
    cb = await it.callback()
    assert loop.time() - started < 2.5 and not it.dead
    assert not cb.ephemeral  # accepted with the cached list, not refused
    job = await bed.job_of(it)
    await bed.wait_job(job.id, JobStatus.POSTED)
    # The refresh was started (once), and is still waiting for the hub.
    await bed.fake.wait_for(lambda: len(bed.hub.requests_to(MODELS)) == asked + 1 or None, 5)
    it2 = await bed.imagine(prompt="another one")
    assert not (await it2.callback()).ephemeral and not it2.dead
    assert len(bed.hub.requests_to(MODELS)) == asked + 1  # one refresh at a time


async def test_a_failed_background_refresh_keeps_the_cached_list(bed: Bed) -> None:
    catalog = bed.services.catalog
    before = await catalog.models()
    catalog.mark_stale()
    bed.hub.http_error_next(1, status=400, paths=[MODELS])
    assert await catalog.models() == before  # served at once
    refresh = catalog.refreshing()
    assert refresh is not None
    await refresh  # errors are logged, never raised to anyone
    assert await catalog.models() == before


async def test_with_nothing_cached_a_hanging_hub_gets_a_friendly_refusal_in_time(bed: Bed) -> None:
    bed.services.catalog.invalidate()
    bed.hub.hang_next(5, seconds=30, paths=[MODELS])
    loop = asyncio.get_running_loop()
    started = loop.time()
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "models", {})
    cb = await it.callback()
    assert loop.time() - started < 3 and not it.dead
    assert cb.ephemeral and "can't be reached" in str(cb.embeds)


async def test_warm_fetches_the_list_in_the_background(bed: Bed) -> None:
    catalog = bed.services.catalog
    catalog.invalidate()
    assert catalog.cached() == []
    await catalog.warm()
    assert [m.id for m in catalog.cached()] == ["gpt-image-2"]
