"""A job's result images, downloaded from the hub's URLs: when it finishes, and again for /show.

The URLs come from the hub's answer and are untrusted: the downloader given is the guarded one
(`HubClients.downloader`), and only bytes that are an image by their magic number are kept.
"""

from __future__ import annotations

import asyncio
import logging

from bot.engine.outcomes import ResultImage
from bot.hub import DownloadError, HubClient
from bot.imagetypes import sniff_result_type
from bot.jobs import Job
from bot.logs import kv
from bot.timings import Timings

log = logging.getLogger(__name__)


async def download_images(hub: HubClient, job: Job, timings: Timings) -> list[ResultImage]:
    """Every image of the job, at once; one that fails keeps only its URL."""

    async def one(index: int, url: str) -> ResultImage:
        try:
            data = await hub.download(url, timings.max_image_bytes, timeout=timings.download_timeout)
        except DownloadError as exc:
            log.warning(kv("job.image_download_failed", job=job.id, index=index, error=str(exc)[:200]))
            return ResultImage(index=index, url=url, data=None)
        content_type = sniff_result_type(data)
        if content_type is None:  # an error page or anything else: never posted as an image
            log.warning(kv("job.image_not_an_image", job=job.id, index=index, size=len(data)))
            return ResultImage(index=index, url=url, data=None)
        return ResultImage(index=index, url=url, data=data, content_type=content_type)

    return list(await asyncio.gather(*(one(i, url) for i, url in enumerate(job.result_urls))))
