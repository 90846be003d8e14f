"""What members can repeat for free must not grow the bot's memory: forms opened and never sent,
and jobs that end without a result (their status messages' edit throttle and the like).

Measured twice, after a warm-up and after ten times as much: live form objects (garbage
collector counts), the entries the bot keeps per job, member or server (the structures'
sizes), and the memory allocated by the bot's own code (`tracemalloc`, by the file that
allocated it, `bot/` and `cogs/`; the fake Discord and the hub emulator, which run in this
process, are left out).
"""

from __future__ import annotations

import asyncio
import gc
import io
import tracemalloc
from pathlib import Path

import discord
import pytest
import yarl
from PIL import Image

from bot.jobs import JobStatus
from cogs.forms import ImagineModal, KeyModal
from cogs.publisher import publisher_of
from tests.bed import Bed
from tests.fakediscord import FakeAttachment, FakeMessage

ROOT = Path(__file__).resolve().parent.parent.parent
OURS = (str(ROOT / "bot") + "/", str(ROOT / "cogs") + "/")
EMULATOR = str(ROOT / "bot" / "hub" / "emulator") + "/"  # runs in this process, for the test
FORM_TIMEOUT = 0.5  # forms time out this fast here (the same code, a shorter clock)


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (3, 2, 1)).save(out, format="PNG")
    return out.getvalue()


def forms() -> list[discord.ui.Modal]:
    return [o for o in gc.get_objects() if isinstance(o, ImagineModal | KeyModal)]


async def forms_timed_out() -> None:
    """Wait for every open form to time out (each one's own `wait()`), then for its clean-up.
    Garbage is collected first: an unreachable form left by an earlier test belongs to that
    test's closed event loop, and waiting on it raises (seen once in CI)."""
    gc.collect()
    await asyncio.wait_for(asyncio.gather(*(form.wait() for form in forms())), 10)
    await asyncio.sleep(0)  # the timeout's `on_timeout` task, which still holds the form


def live_forms() -> int:
    gc.collect()
    return len(forms())


def snapshot() -> tracemalloc.Snapshot:
    """A snapshot without yarl's URL caches (bounded LRUs of 128, which hold the webhook URLs a
    run made and fill up over the first few hundred jobs: they are not the bot's growth)."""
    yarl.cache_clear()
    gc.collect()
    return tracemalloc.take_snapshot()


def ours(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still allocated by lines of the bot's own code (innermost frame in bot/ or cogs/)."""
    return sum(s.size for s in snapshot.statistics("filename") if _ours(s.traceback[0].filename))


def _ours(filename: str) -> bool:
    return filename.startswith(OURS) and not filename.startswith(EMULATOR)


def top(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> str:
    diffs = [d for d in after.compare_to(before, "lineno") if _ours(d.traceback[0].filename)]
    return "\n".join(str(d) for d in diffs[:8])


async def open_forms(bed: Bed, source: FakeMessage, n: int) -> None:
    """`n` forms opened and closed without sending: the context menu's, and the key form."""
    for i in range(n):
        if i % 5:
            it = await bed.fake.message_command(
                bed.d.guild, bed.d.images, bed.d.alice, "Imagine with these images", source
            )
        else:
            it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "key", "set"])
        assert (await it.callback()).type == 9  # a form


def held(bed: Bed) -> dict[str, int]:
    """What the bot keeps per job, per member or per server, entry counts (all must stay flat)."""
    publisher = publisher_of(bed.bot)
    imagine = bed.services.imagine
    return {
        "status edit times": len(publisher._last_edit) + len(publisher._last_queue_edit),
        "gone status messages, dead tokens": len(publisher._gone_status) + len(publisher._dead_tokens),
        "mod-log report times": len(publisher.mod_log._reported),
        "steps in flight": bed.services.engine.steps_in_flight,
        "queue positions shown": sum(len(s) for s in bed.services.queue_runner._shown.values()),
        "reference downloads": len(imagine.downloads._running),
        "references kept": len(bed.services.references._by_job),
        "filter locks": len(imagine.filters._locks),
    }


async def fail_jobs(bed: Bed, n: int) -> None:
    """`n` jobs sent to the hub (their status message edited) that the hub then fails."""
    bed.hub.fail_next(n)
    for start in range(0, n, 50):
        ids = range(start, min(n, start + 50))
        batch = await asyncio.gather(*(bed.imagine(prompt=f"doomed {i}") for i in ids))
        jobs = [await bed.job_of(it) for it in batch]
        for job in jobs:
            await bed.wait_job(job.id, JobStatus.FAILED, timeout=30)
    while bed.services.engine.steps_in_flight:  # the last steps' notices, before measuring
        await asyncio.wait_for(bed.services.engine.wait_step(), 10)


@pytest.mark.timeout(300)
@pytest.mark.timings(form_timeout=FORM_TIMEOUT, key_form_timeout=FORM_TIMEOUT, progress_interval=0.2)
async def test_forms_never_sent_and_failed_jobs_leave_memory_flat(rbed: Bed) -> None:
    await rbed.services.guilds.update(
        rbed.guild_id,
        max_concurrent_per_member=100,
        max_concurrent_per_guild=100,
        max_queued_per_member=100,
        max_queued_per_guild=100,
    )
    source = await rbed.fake.user_message(
        rbed.d.images, rbed.d.bob, "a mood board", attachments=[FakeAttachment("m.png", png())]
    )

    tracemalloc.start(1)
    try:
        await open_forms(rbed, source, 100)
        await fail_jobs(rbed, 100)
        await forms_timed_out()
        first = snapshot()
        forms_warm, warm, held_warm = live_forms(), ours(first), held(rbed)

        await open_forms(rbed, source, 1000)
        await fail_jobs(rbed, 1000)
        await forms_timed_out()
        last = snapshot()
        forms_end, end, held_end = live_forms(), ours(last), held(rbed)
    finally:
        tracemalloc.stop()
    print(
        f"\nmemory: forms alive {forms_warm} -> {forms_end}; per-job entries {sum(held_warm.values())} -> "
        f"{sum(held_end.values())}; bot's own allocations {warm / 1024:.0f} KiB -> {end / 1024:.0f} KiB "
        f"(+{(end - warm) / 1024:.0f} KiB) after 1,000 more forms and 1,000 more failed jobs"
    )
    print(top(first, last))
    # Before the bounds: 1,100 forms alive, and an edit time kept for each of the 1,100 jobs.
    assert forms_end <= forms_warm + 5, (forms_warm, forms_end)
    for name, count in held_end.items():
        assert count <= held_warm[name] + 10, (name, held_warm[name], count)
    # Everything the bot's own lines allocated and still hold: gross leaks (a kilobyte a job) fail
    # this. Open: ~120-byte blocks per status edit stay allocated under the lines that format a
    # message's text and call the webhook edit (~340-520 KiB per 1,000 jobs, depending on how much
    # text a status carries). A scan of every object the gc knows, and of the untracked dicts and
    # tuples inside them, finds none of those strings held by anything: see SECURITY.md.
    assert end - warm < 768 * 1024, top(first, last)
