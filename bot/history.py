"""Past generations: what a job cost, how long it took, and its images fetched again.

`/show` re-posts a result from the job row alone: the hub's image URLs are stored with the job
(`result_urls`), so the images are downloaded again, exactly as the engine first did
(`bot.engine.images`, through the same guarded downloader). `ShowLimits` bounds how many run
at once and how often.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from bot.engine.images import download_images
from bot.engine.outcomes import Result
from bot.hub import HubClient
from bot.jobs import Job, JobStatus
from bot.limits import WorkCounts
from bot.refusals import Refusal, RefusalCode
from bot.timings import Timings

# /show downloads up to 4 images of up to 60 MB: at once, one per member, a few per server and
# in the whole process; and a member may start only a few a minute.
MAX_MEMBER_SHOWS = 1
MAX_GUILD_SHOWS = 2
MAX_SHOWS = 6
MEMBER_SHOWS_PER_MINUTE = 5
_RATE_WINDOW = 60.0


def charged(job: Job) -> int:
    """Credits the job used from the member's budget, as far as is known."""
    if job.charged_credits is not None:
        return job.charged_credits
    if job.status in (JobStatus.CANCELLED, JobStatus.FAILED):
        return 0
    return job.cost  # reserved (still running) or counted (outcome unknown)


def elapsed(job: Job) -> float:
    """Seconds from submission to posting (0 when unknown)."""
    end = job.posted_at or job.finished_at
    if job.submitted_at is None or end is None:
        return 0.0
    return max(0.0, (end - job.submitted_at).total_seconds())


async def fetch_result(hub: HubClient, job: Job, timings: Timings) -> Result:
    """The job's images downloaded again from the stored URLs (a failed one keeps only its URL)."""
    images = await download_images(hub, job, timings)
    spent = charged(job)
    return Result(
        images=images,
        requested=job.params.n,
        charged=spent,
        refunded=max(0, job.cost - spent),
        elapsed=elapsed(job),
    )


class ShowSlot:
    """A running /show's place; released when the `with` block ends."""

    def __init__(self, limits: ShowLimits, guild_id: int, user_id: int) -> None:
        self._limits = limits
        self._key = (guild_id, user_id)
        self._held = True

    def __enter__(self) -> ShowSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self._held = False
            self._limits._release(self._key)


class ShowLimits:
    """Per member (one at a time, `MEMBER_SHOWS_PER_MINUTE`), per server and per process.

    In-process counters: a server's interactions all reach the process holding its shard."""

    def __init__(
        self,
        *,
        per_member: int = MAX_MEMBER_SHOWS,
        per_guild: int = MAX_GUILD_SHOWS,
        total: int = MAX_SHOWS,
        per_minute: int = MEMBER_SHOWS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_member, self.per_guild = per_member, per_guild
        self.total, self.per_minute = total, per_minute
        self._clock = clock
        self._running = WorkCounts()
        self._recent: dict[tuple[int, int], deque[float]] = {}

    def claim(self, guild_id: int, user_id: int) -> ShowSlot:
        """A slot for a /show, or a `Refusal` saying which bound it hit."""
        key = (guild_id, user_id)
        now = self._clock()
        recent = self._recent.get(key)
        while recent and recent[0] <= now - _RATE_WINDOW:
            recent.popleft()
        if self._running.member(guild_id, user_id) >= self.per_member:
            raise Refusal(RefusalCode.SHOW_MEMBER_BUSY)
        if recent is not None and len(recent) >= self.per_minute:
            raise Refusal(RefusalCode.SHOW_MEMBER_RATE)
        if self._running.guild(guild_id) >= self.per_guild:
            raise Refusal(RefusalCode.SHOW_SERVER_BUSY)
        if self._running.total >= self.total:
            raise Refusal(RefusalCode.SHOW_BUSY)
        if len(self._recent) > 10_000:  # forget members whose minute has passed
            self._recent = {k: q for k, q in self._recent.items() if q and q[-1] > now - _RATE_WINDOW}
        self._recent.setdefault(key, deque()).append(now)
        self._running.add(guild_id, user_id)
        return ShowSlot(self, guild_id, user_id)

    def _release(self, key: tuple[int, int]) -> None:
        self._running.remove(*key)

    def tracked(self) -> int:
        """Members remembered (running, or used /show within the minute): bounded."""
        return len(self._recent) + len(self._running)
