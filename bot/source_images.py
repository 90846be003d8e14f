"""Images of earlier results, fetched again from the hub: the references of Upscale and Vary.

A per-image action names an earlier job and one of its images (`ReferenceSpec.hub_image`). The
bytes come from the hub, never from Discord: the job's stored result URLs, and when those no
longer answer, fresh ones from the hub's record of the generation (`get_generation`). So the
buttons work after a restart and after Discord's CDN URLs expired. The URLs are untrusted: they
go through the guarded downloader (`HubClients.downloader`). `ReferenceFetcher` sends each
reference to the right downloader: Discord attachments to `AttachmentDownloader`, earlier
results here.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bot.hub import HubClient, HubError
from bot.job_store import JobStore
from bot.jobs import Job
from bot.logs import kv
from bot.references import Attachment, Fetch
from bot.timings import Timings

log = logging.getLogger(__name__)


class SourceImageGone(LookupError):
    """The earlier job, or that image of it, is no longer known (pruned, or never delivered)."""


class JobHubs(Protocol):
    """Hub clients: the key that made a job (to ask the hub about it) and the guarded downloader."""

    async def for_job(self, job: Job) -> HubClient | None: ...

    def downloader(self) -> HubClient: ...


class SourceImages:
    """See the module docstring."""

    def __init__(self, jobs: JobStore, hubs: JobHubs, timings: Timings) -> None:
        self.jobs = jobs
        self.hubs = hubs
        self.timings = timings

    async def __call__(self, attachment: Attachment) -> bytes:
        assert attachment.hub_image is not None
        job_id, number = attachment.hub_image
        job = await self.jobs.get(job_id)
        if job is None or not 1 <= number <= len(job.result_urls):
            raise SourceImageGone(f"job {job_id} image {number}")
        downloader = self.hubs.downloader()
        limit, timeout = self.timings.max_image_bytes, self.timings.download_timeout
        try:
            return await downloader.download(job.result_urls[number - 1], limit, timeout=timeout)
        except HubError as exc:
            log.info(kv("source_image.stored_url_failed", job=job_id, image=number, error=type(exc).__name__))
            if job.hub_generation_id is None:
                raise
        # The stored URL no longer answers: ask the hub where the image is now.
        hub = await self.hubs.for_job(job)  # the key that made it: the hub shows it to its owner only
        if hub is None:
            raise SourceImageGone(f"job {job_id}: no key to ask the hub with")
        generation = await hub.get_generation(job.hub_generation_id)
        if len(generation.images) < number:
            raise SourceImageGone(f"job {job_id} image {number}")
        return await downloader.download(generation.images[number - 1].url, limit, timeout=timeout)


class ReferenceFetcher:
    """Downloads a reference from where it lives: an earlier result at the hub, else Discord."""

    def __init__(self, discord: Fetch, hub: Fetch) -> None:
        self.discord = discord
        self.hub = hub

    async def __call__(self, attachment: Attachment) -> bytes:
        if attachment.hub_image is not None:
            return await self.hub(attachment)
        return await self.discord(attachment)
