"""Errors raised by `bot.hub.HubClient`.

Every failure of a hub call surfaces as a `HubError` (never a raw aiohttp, pydantic or `KeyError`).
The subclasses split into three families, and callers must tell them apart:

* a definite answer from the hub (`InvalidRequest`, `MissingApiKey`, `InvalidApiKey`, `ExpiredApiKey`,
  `InsufficientCredits`, `NotFound`, `GenerationFailed`, or a base `HubError` with an unknown code):
  the hub refused or failed the request; for a submission nothing stays charged;
* `HubUnavailable`: the hub could not be reached (nothing was sent) or kept failing a read;
* `OutcomeUnknown`: a submission may have reached the hub but no usable answer came back. It may have
  been charged and may still produce images; it must never be resubmitted automatically.

`DownloadError` / `DownloadTooLarge` come from fetching a finished image.

Messages never carry an API key: anything shaped like a hub key is redacted on construction.
"""

from __future__ import annotations

import re

_KEY_PATTERN = re.compile(r"gih_(?:live|test)_[A-Za-z0-9_\-]+")


def redact(text: str, *secrets: str | None) -> str:
    """`text` with hub keys (and any of `secrets`) replaced by a mask."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "gih_***")
    return _KEY_PATTERN.sub("gih_***", text)


class HubError(Exception):
    """The hub call failed. `status` is the HTTP status if an answer came, `code` the hub's error code."""

    default_code = "hub_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.message = redact(str(message))
        self.status = status
        self.code = redact(code) if code else self.default_code
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f"HTTP {self.status}, " if self.status is not None else ""
        return f"{self.message} ({where}code {self.code})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class InvalidRequest(HubError):
    """400 invalid_request: the body or parameters were rejected."""

    default_code = "invalid_request"


class MissingApiKey(HubError):
    """401 missingApiKey: no Authorization header was sent."""

    default_code = "missingApiKey"


class InvalidApiKey(HubError):
    """401 invalidApiKey: the key does not exist or was revoked."""

    default_code = "invalidApiKey"


class ExpiredApiKey(HubError):
    """401 expiredApiKey: the key expired."""

    default_code = "expiredApiKey"


class InsufficientCredits(HubError):
    """402 insufficientCredits: the key's owner has too few credits (nothing was charged)."""

    default_code = "insufficientCredits"


class NotFound(HubError):
    """404 notFound: no such resource, or it belongs to another user."""

    default_code = "notFound"


class GenerationFailed(HubError):
    """500 generationFailed: the provider failed; the hub refunds the credits."""

    default_code = "generationFailed"


class HubUnavailable(HubError):
    """The hub could not be reached (nothing was sent), or a read kept failing after every retry."""

    default_code = "unavailable"


class OutcomeUnknown(HubError):
    """A submission may have reached the hub but no usable answer came: never resubmit it automatically."""

    default_code = "outcome_unknown"


class DownloadError(HubError):
    """An image could not be downloaded (HTTP error, timeout, connection failure)."""

    default_code = "download_failed"


class DownloadTooLarge(DownloadError):
    """An image was larger than the allowed size."""

    default_code = "download_too_large"


_BY_CODE: dict[str, type[HubError]] = {
    cls.default_code.lower().replace("_", ""): cls
    for cls in (
        InvalidRequest,
        MissingApiKey,
        InvalidApiKey,
        ExpiredApiKey,
        InsufficientCredits,
        NotFound,
        GenerationFailed,
    )
}

DOCUMENTED_CODES: frozenset[str] = frozenset(cls.default_code for cls in _BY_CODE.values())


def error_class_for(code: str | None) -> type[HubError] | None:
    """The subclass for a documented error code (case and underscores ignored), else None."""
    if not code:
        return None
    return _BY_CODE.get(code.lower().replace("_", ""))
