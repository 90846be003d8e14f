"""What the engine promises the outside, and what it needs from it: the `Publisher`.

A job ends with its images posted (`Result`) or with a `Notice` saying why not and what it
cost. The engine knows nothing of Discord: a `Publisher` (the Discord adapter's, in
`cogs/publisher.py`) shows progress, posts results and notices, shows queued jobs' places and
the low-balance alert. It is given to the engine when the engine starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bot.jobs import Job
from bot.queue import Place


class NoticeKind(StrEnum):
    """Why a job ended without (all of) its images; rendered for members by the Discord side."""

    HUB_FAILED = "hub_failed"
    HUB_UNAVAILABLE = "hub_unavailable"
    OUTCOME_UNKNOWN = "outcome_unknown"
    NO_KEY = "no_key"
    BAD_KEY = "bad_key"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    INVALID_REQUEST = "invalid_request"
    DOWNLOAD_FAILED = "download_failed"
    TIMED_OUT = "timed_out"
    REFERENCES_GONE = "references_gone"
    PUBLISH_FAILED = "publish_failed"


@dataclass(frozen=True, slots=True)
class Notice:
    """A member-facing account of what happened to a job, and what it cost."""

    kind: NoticeKind
    detail: str = ""
    refunded: int = 0
    charged: int = 0


@dataclass(frozen=True, slots=True)
class ResultImage:
    """One downloaded image, or only its URL when the download failed."""

    index: int
    url: str
    data: bytes | None
    content_type: str = "image/png"


@dataclass(frozen=True, slots=True)
class Result:
    """A finished generation ready to post."""

    images: Sequence[ResultImage]
    requested: int
    charged: int
    refunded: int
    elapsed: float


class PublishError(Exception):
    """Posting failed. `permanent` means retrying cannot help (channel gone, no permission)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Publisher(Protocol):
    """What the engine needs from the chat side; implemented in `cogs/publisher.py`."""

    async def progress(self, job: Job) -> None:
        """Show the job's state on its status message (the publisher throttles edits)."""

    async def result(self, job: Job, result: Result) -> list[int]:
        """Post the images once; return the posted message ids. Raise `PublishError`."""

    async def notice(self, job: Job, notice: Notice) -> None:
        """Tell the member (and, for some kinds, moderators) why a job ended."""

    async def queued(self, job: Job, place: Place) -> bool:
        """Show a queued job's place; False only when the edit was throttled (try again later)."""

    async def low_balance(self, guild_id: int, credits: int, threshold: int) -> None:
        """The server's hub balance fell below its alert threshold (told once per low spell)."""
