"""Past generations: what a job cost, how long it took, and its images fetched again.

`/show` re-posts a result from the job row alone: the hub's image URLs are stored with the job
(`result_urls`), so the images are downloaded again, exactly as the scheduler first did.
"""

from __future__ import annotations

import asyncio
import logging

from bot.hub import DownloadError, HubClient
from bot.jobs import Job, JobStatus
from bot.logs import kv
from bot.references import sniff_image_type
from bot.scheduler import DOWNLOAD_TIMEOUT, MAX_IMAGE_BYTES, Result, ResultImage

log = logging.getLogger(__name__)


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


async def fetch_result(hub: HubClient, job: Job) -> Result:
    """The job's images downloaded again from the stored URLs (a failed one keeps only its URL)."""

    async def one(index: int, url: str) -> ResultImage:
        try:
            data = await hub.download(url, MAX_IMAGE_BYTES, timeout=DOWNLOAD_TIMEOUT)
        except DownloadError as exc:
            log.info(kv("history.download_failed", job=job.id, index=index, error=str(exc)[:200]))
            return ResultImage(index=index, url=url, data=None)
        return ResultImage(
            index=index, url=url, data=data, content_type=sniff_image_type(data) or "application/octet-stream"
        )

    images = await asyncio.gather(*(one(i, url) for i, url in enumerate(job.result_urls)))
    spent = charged(job)
    return Result(
        images=list(images),
        requested=job.params.n,
        charged=spent,
        refunded=max(0, job.cost - spent),
        elapsed=elapsed(job),
    )
