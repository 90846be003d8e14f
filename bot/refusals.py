"""Why the bot turns a request down, by reason code: raised before anything is spent.

The core decides and says why with a `RefusalCode` and the facts behind it (`params`: numbers,
names, ids as data, never sentences); the chat side renders it in the member's words
(`cogs/messages.py` keys each code's text as `refusal.<code>`). A code is a stable id: its
text may change, the code does not.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RefusalCode(StrEnum):
    # /imagine: the request itself
    CHANNEL_NOT_ALLOWED = "channel_not_allowed"  # channels: the server's allow-list (ids)
    PROMPT_EMPTY = "prompt_empty"
    PROMPT_TOO_LONG = "prompt_too_long"  # length, limit
    PROMPT_BLOCKED = "prompt_blocked"  # (a `Blocked`: the prompt, for the moderator log)
    UNKNOWN_MODEL = "unknown_model"  # model (as typed), available (model ids)
    ASPECT_UNSUPPORTED = "aspect_unsupported"  # model, aspect
    RESOLUTION_UNSUPPORTED = "resolution_unsupported"  # model, resolution
    SIZE_UNSUPPORTED = "size_unsupported"  # model, aspect, resolution
    QUALITY_INVALID = "quality_invalid"  # qualities
    COUNT_INVALID = "count_invalid"  # limit
    TOO_MANY_REFERENCES = "too_many_references"  # model, limit, given
    # /imagine: the server, its budget and its queue
    HUB_UNREACHABLE = "hub_unreachable"
    NO_KEY = "no_key"
    KEY_UNREADABLE = "key_unreadable"
    PERSONAL_KEY_UNREADABLE = "personal_key_unreadable"
    PERSONAL_KEYS_FORBIDDEN = "personal_keys_forbidden"  # the member has a key, the server allows none
    NEEDS_PERSONAL_KEY = "needs_personal_key"  # a DM or a server without the bot: only a member's key
    QUOTA_EXCEEDED = "quota_exceeded"  # cost, remaining, resets_at (a datetime, or None)
    QUEUE_FULL_MEMBER = "queue_full_member"  # count: the member's jobs waiting
    QUEUE_FULL_SERVER = "queue_full_server"
    # reference images
    REFERENCE_TOO_LARGE = "reference_too_large"  # filename, size (bytes declared), limit (bytes)
    REFERENCE_OVER_LIMIT = "reference_over_limit"  # filename, limit (bytes): the bytes themselves
    REFERENCE_EMPTY = "reference_empty"  # filename
    REFERENCE_NOT_AN_IMAGE = "reference_not_an_image"  # filename
    REFERENCE_DAMAGED = "reference_damaged"  # filename
    REFERENCE_DOWNLOAD_FAILED = "reference_download_failed"  # filename
    REFERENCE_MESSAGE_GONE = "reference_message_gone"
    REFERENCE_MESSAGE_UNREADABLE = "reference_message_unreadable"
    REFERENCES_BUSY_MEMBER = "references_busy_member"
    REFERENCES_BUSY_SERVER = "references_busy_server"
    REFERENCES_BUSY = "references_busy"
    SOURCE_IMAGE_UNAVAILABLE = "source_image_unavailable"  # job, image: Upscale/Vary's image from the hub
    # /show
    SHOW_MEMBER_BUSY = "show_member_busy"
    SHOW_MEMBER_RATE = "show_member_rate"
    SHOW_SERVER_BUSY = "show_server_busy"
    SHOW_BUSY = "show_busy"
    # prompt filters (/config filter add)
    PATTERN_EMPTY = "pattern_empty"
    PATTERN_TOO_LONG = "pattern_too_long"  # limit
    PATTERN_INVALID = "pattern_invalid"  # reason (RE2's words)
    PATTERN_TOO_COMPLEX = "pattern_too_complex"  # size, limit
    TOO_MANY_PATTERNS = "too_many_patterns"  # limit
    PATTERNS_TOO_COSTLY = "patterns_too_costly"  # total, limit
    WORD_EMPTY = "word_empty"
    WORD_TOO_LONG = "word_too_long"  # limit
    TOO_MANY_WORDS = "too_many_words"  # limit


class Refusal(Exception):
    """The request cannot go ahead, for reason `code` (facts in `params`). Nothing was spent."""

    def __init__(self, code: RefusalCode, /, **params: Any) -> None:
        super().__init__(code.value, params)
        self.code = code
        self.params: dict[str, Any] = params

    def __str__(self) -> str:
        facts = " ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.code.value} {facts}".strip()


class Blocked(Refusal):
    """The server's prompt filters matched (moderators are told; the member is not told which rule)."""

    def __init__(self, prompt: str) -> None:
        super().__init__(RefusalCode.PROMPT_BLOCKED)
        self.prompt = prompt  # for the moderator log, not part of the member's answer
