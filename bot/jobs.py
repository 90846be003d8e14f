"""The generation job: its states, what it asks for, and a snapshot of its row.

States (see docs/ARCHITECTURE.md): `queued` waits locally for a concurrency slot;
`pending_submit` → `submitting` (the hub POST is about to be / being sent) → `submitted` →
`running` → `succeeded` (images known) → `posted`. Side exits: `failed`, `cancelled`,
`unknown`. A job found in `submitting` after a crash becomes `unknown`, because the hub may or
may not have accepted it: it is never resubmitted automatically. The SQL is `bot.job_store`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class SourceAction(StrEnum):
    """What a job made from one image of an earlier result does with it."""

    UPSCALE = "upscale"  # the same prompt and aspect at 4K, the image as the single reference
    VARY = "vary"  # the same prompt, aspect and tier, the image as the single reference


@dataclass(frozen=True)
class JobSource:
    """The earlier job (and which of its images, from 1) a per-image action started from."""

    job_id: int
    action: SourceAction
    image: int


class JobStatus(StrEnum):
    QUEUED = "queued"
    PENDING_SUBMIT = "pending_submit"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    POSTED = "posted"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


ACTIVE: frozenset[JobStatus] = frozenset(
    {
        JobStatus.PENDING_SUBMIT,
        JobStatus.SUBMITTING,
        JobStatus.SUBMITTED,
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
    }
)
TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.POSTED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.UNKNOWN}
)


@dataclass(frozen=True)
class ReferenceSpec:
    """A reference image attached to a request (downloaded again when the job is submitted)."""

    url: str
    filename: str
    content_type: str
    size: int
    #: (channel id, message id, attachment id) when the image came from a message: its signed CDN
    #: URL expires, and fetching that message again gives a fresh one (a reroll days later)
    source: tuple[int, int, int] | None = None
    #: (job id, image number from 1) when the image is one of an earlier job's results: it is
    #: fetched from the hub (that job's result URLs), never from Discord's CDN
    hub_image: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "url": self.url,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
        }
        if self.source is not None:
            data["source"] = list(self.source)
        if self.hub_image is not None:
            data["hub_image"] = list(self.hub_image)
        return data

    @classmethod
    def from_json(cls, r: Mapping[str, Any]) -> ReferenceSpec:
        source = r.get("source")
        hub_image = r.get("hub_image")
        return cls(
            url=str(r["url"]),
            filename=str(r["filename"]),
            content_type=str(r["content_type"]),
            size=int(r["size"]),
            source=(int(source[0]), int(source[1]), int(source[2])) if source else None,
            hub_image=(int(hub_image[0]), int(hub_image[1])) if hub_image else None,
        )


@dataclass(frozen=True)
class JobParams:
    """What to generate."""

    model: str
    prompt: str
    aspect: str
    tier: str
    quality: str
    n: int = 1
    size: str | None = None
    references: tuple[ReferenceSpec, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": self.prompt,
            "aspect": self.aspect,
            "tier": self.tier,
            "quality": self.quality,
            "n": self.n,
            "size": self.size,
            "references": [r.to_json() for r in self.references],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobParams:
        return cls(
            model=str(data["model"]),
            prompt=str(data["prompt"]),
            aspect=str(data["aspect"]),
            tier=str(data["tier"]),
            quality=str(data["quality"]),
            n=int(data.get("n", 1)),
            size=data.get("size"),
            references=tuple(ReferenceSpec.from_json(r) for r in data.get("references", ())),
        )


@dataclass(frozen=True)
class Job:
    """A snapshot of one job row."""

    id: int
    guild_id: int
    channel_id: int
    user_id: int
    application_id: int | None
    interaction_token: str | None = field(repr=False)
    token_expires_at: datetime | None
    status_message_id: int | None
    upload_limit: int | None
    locale: str | None  # the language of the job's public messages, chosen at launch
    reply_to_message_id: int | None
    params: JobParams
    cost: int
    reservation_id: int | None
    hub_generation_id: str | None
    status: JobStatus
    hub_status: str | None
    next_poll_at: datetime | None
    poll_attempts: int
    error_attempts: int
    last_error: str | None
    result_urls: list[str]
    delivered_images: int
    charged_credits: int | None
    posted_message_ids: list[int]
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    posted_at: datetime | None
    #: set for an Upscale or Vary of one image of an earlier job (see `source`)
    source_job_id: int | None = None
    source_action: SourceAction | None = None
    source_image: int | None = None
    #: the result goes to the member only (their `/settings` visibility)
    private: bool = False
    #: whose hub key pays: None the server's (or the operator's fallback), else this member's own
    key_owner: int | None = None

    @property
    def source(self) -> JobSource | None:
        """The earlier job and image an Upscale or Vary started from; None for any other job."""
        if self.source_job_id is None or self.source_action is None or self.source_image is None:
            return None
        return JobSource(self.source_job_id, self.source_action, self.source_image)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


class JobError(Exception):
    pass


class UnknownJob(JobError, LookupError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class LeaseLost(JobError):
    """The worker no longer holds the job's lease (another worker took it over, or it was released)."""

    def __init__(self, job_id: int, owner: str | None) -> None:
        super().__init__(f"job {job_id}: lease no longer held by {owner!r}")
        self.job_id = job_id
        self.owner = owner


class JobConflict(JobError):
    """The job is not in one of the statuses the update expected."""

    def __init__(self, job_id: int, status: JobStatus, expected: Collection[JobStatus]) -> None:
        wanted = ", ".join(sorted(s.value for s in expected))
        super().__init__(f"job {job_id} is {status.value}, expected one of: {wanted}")
        self.job_id = job_id
        self.status = status
        self.expected = frozenset(expected)
