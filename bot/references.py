"""Reference images: checked by their bytes, downloaded within bounds, kept until submitted.

Checks (`check_declared_size`, `check_reference`) run before anything is reserved or sent, so a
bad attachment costs nothing; they go by the bytes, not by what the uploader declared.
`ReferenceDownloads` bounds how many requests download at once; `AttachmentDownloader` fetches
one with a time and size cap; `ReferenceCache` keeps the checked bytes from the check to the
submission.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from bot.hub import Reference
from bot.imagetypes import looks_complete, sniff_image_type
from bot.jobs import Job
from bot.limits import WorkCounts
from bot.refusals import Refusal, RefusalCode
from bot.timings import Timings

MAX_REFERENCE_BYTES = 50 * 1024 * 1024
ALLOWED_TYPES = ("image/png", "image/jpeg", "image/webp")
# Requests whose reference images are being downloaded at once: per member, per server, and in
# declared bytes for the whole process (one request may declare up to 16 x 50 MB).
MAX_MEMBER_REFERENCE_DOWNLOADS = 1
MAX_GUILD_REFERENCE_DOWNLOADS = 3
MAX_REFERENCE_BYTES_IN_FLIGHT = 1 << 30


class BadReference(Refusal):
    """A reference image is unusable (a `Refusal`: its code says why)."""


@dataclass(frozen=True, slots=True)
class CheckedReference:
    data: bytes
    filename: str
    content_type: str


def check_declared_size(filename: str, size: int) -> None:
    """Refuse by the declared size, before downloading anything."""
    if size > MAX_REFERENCE_BYTES:
        raise BadReference(
            RefusalCode.REFERENCE_TOO_LARGE, filename=filename, size=size, limit=MAX_REFERENCE_BYTES
        )
    if size == 0:
        raise BadReference(RefusalCode.REFERENCE_EMPTY, filename=filename)


def check_reference(filename: str, data: bytes) -> CheckedReference:
    """Check downloaded bytes; the content type comes from the bytes themselves."""
    if not data:
        raise BadReference(RefusalCode.REFERENCE_EMPTY, filename=filename)
    if len(data) > MAX_REFERENCE_BYTES:
        raise BadReference(RefusalCode.REFERENCE_OVER_LIMIT, filename=filename, limit=MAX_REFERENCE_BYTES)
    kind = sniff_image_type(data)
    if kind is None:
        raise BadReference(RefusalCode.REFERENCE_NOT_AN_IMAGE, filename=filename)
    if not looks_complete(data, kind):
        raise BadReference(RefusalCode.REFERENCE_DAMAGED, filename=filename)
    return CheckedReference(data=data, filename=filename, content_type=kind)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A reference image as Discord described it; bytes are fetched only after the cheap checks."""

    url: str
    filename: str
    size: int
    content_type: str | None = None
    #: (channel id, message id, attachment id) when it came from a message (see `ReferenceSpec`)
    source: tuple[int, int, int] | None = None
    #: (job id, image number from 1): an earlier result, fetched from the hub (`bot.source_images`)
    hub_image: tuple[int, int] | None = None


Fetch = Callable[[Attachment], Awaitable[bytes]]


class AttachmentDownloader:
    """Downloads a member's attachment from Discord's CDN (the only member-supplied URL the bot
    fetches) with a time and size cap (`Timings.attachment_timeout`, `attachment_max_bytes`)."""

    def __init__(self, session: aiohttp.ClientSession, timings: Timings) -> None:
        self._session = session
        self._timings = timings

    async def __call__(self, attachment: Attachment) -> bytes:
        max_bytes = self._timings.attachment_max_bytes
        timeout = aiohttp.ClientTimeout(total=self._timings.attachment_timeout)
        async with self._session.get(attachment.url, timeout=timeout) as response:
            response.raise_for_status()
            if response.content_length is not None and response.content_length > max_bytes:
                raise ValueError("attachment too large")
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.content.iter_chunked(65536):
                total += len(chunk)
                if total > max_bytes:
                    raise ValueError("attachment too large")
                chunks.append(chunk)
            return b"".join(chunks)


class DownloadSlot:
    """A request's place among the reference downloads under way; `release()` (or leaving the
    `with` block) gives it back. Taken by `ReferenceDownloads.claim`."""

    def __init__(self, owner: ReferenceDownloads, guild_id: int, user_id: int, size: int) -> None:
        self._owner = owner
        self._key = (guild_id, user_id)
        self._size = size
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._owner._release(self._key, self._size)

    def __enter__(self) -> DownloadSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ReferenceDownloads:
    """Bounds the reference images downloaded at once: a member's requests one at a time, a few
    per server, and a byte budget (by Discord's declared sizes) for the process. A request over a
    bound is refused at once, with a reason, before anything is downloaded. (A server's
    interactions all reach the process holding its shard, so the per-server bounds hold overall.)"""

    def __init__(
        self,
        *,
        per_member: int = MAX_MEMBER_REFERENCE_DOWNLOADS,
        per_guild: int = MAX_GUILD_REFERENCE_DOWNLOADS,
        max_bytes: int = MAX_REFERENCE_BYTES_IN_FLIGHT,
    ) -> None:
        self.per_member = per_member
        self.per_guild = per_guild
        self.max_bytes = max_bytes
        self._running = WorkCounts()
        self._bytes = 0

    def claim(self, guild_id: int, user_id: int, size: int) -> DownloadSlot:
        """A slot for a request declaring `size` bytes of references, or `Refusal`."""
        if self._running.member(guild_id, user_id) >= self.per_member:
            raise Refusal(RefusalCode.REFERENCES_BUSY_MEMBER)
        if self._running.guild(guild_id) >= self.per_guild:
            raise Refusal(RefusalCode.REFERENCES_BUSY_SERVER)
        if self._bytes and self._bytes + size > self.max_bytes:
            raise Refusal(RefusalCode.REFERENCES_BUSY)
        self._running.add(guild_id, user_id)
        self._bytes += size
        return DownloadSlot(self, guild_id, user_id, size)

    def _release(self, key: tuple[int, int], size: int) -> None:
        self._bytes -= size
        self._running.remove(*key)

    @property
    def busy(self) -> int:
        """Requests downloading now (for tests and metrics)."""
        return self._running.total


class ReferenceCache:
    """Reference bytes kept in memory from the check to the submission.

    Bounded: at most `max_bytes`, oldest entries evicted first, and none kept longer than
    `max_age`. An entry is never used when another process submits the job (several processes
    share the database) or after a restart; eviction keeps such entries from filling the cache
    for good. Whatever is not here, the engine downloads again (from Discord, or from the hub for
    an earlier result: the URLs are in the job row) and re-checks. Entries go when the job is
    submitted or ends.
    """

    def __init__(self, fetch: Fetch, max_bytes: int = 256 * 1024 * 1024, max_age: float = 30 * 60.0) -> None:
        self._fetch = fetch
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._bytes = 0
        self._by_job: dict[int, tuple[float, list[Reference]]] = {}  # oldest first

    def size_bytes(self) -> int:
        return self._bytes

    def put(self, job_id: int, references: Sequence[Reference]) -> None:
        size = sum(len(r.data) for r in references)
        if not references or size > self._max_bytes:
            return
        self._expire()
        while self._by_job and self._bytes + size > self._max_bytes:
            self.discard(next(iter(self._by_job)))
        self.discard(job_id)
        self._by_job[job_id] = (time.monotonic(), list(references))
        self._bytes += size

    def _expire(self) -> None:
        cutoff = time.monotonic() - self._max_age
        while self._by_job:
            oldest = next(iter(self._by_job))
            if self._by_job[oldest][0] > cutoff:
                return
            self.discard(oldest)

    def discard(self, job_id: int) -> None:
        entry = self._by_job.pop(job_id, None)
        if entry is not None:
            self._bytes -= sum(len(r.data) for r in entry[1])

    async def load(self, job: Job) -> list[Reference]:
        self._expire()
        entry = self._by_job.get(job.id)
        if entry is not None:
            self.discard(job.id)
            return entry[1]
        refs = []
        for spec in job.params.references:
            data = await self._fetch(
                Attachment(url=spec.url, filename=spec.filename, size=spec.size, hub_image=spec.hub_image)
            )
            checked = check_reference(spec.filename, data)
            refs.append(
                Reference(data=checked.data, filename=checked.filename, content_type=checked.content_type)
            )
        return refs
