"""bot.hub.errors: the hierarchy, code mapping and key redaction."""

from __future__ import annotations

import pytest

from bot.hub import (
    DownloadError,
    DownloadTooLarge,
    ExpiredApiKey,
    GenerationFailed,
    HubError,
    HubUnavailable,
    InsufficientCredits,
    InvalidApiKey,
    InvalidRequest,
    MissingApiKey,
    NotFound,
    OutcomeUnknown,
)
from bot.hub.errors import error_class_for

SECRET = "gih_live_" + "Q" * 32


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("invalid_request", InvalidRequest),
        ("missingApiKey", MissingApiKey),
        ("invalidApiKey", InvalidApiKey),
        ("expiredApiKey", ExpiredApiKey),
        ("insufficientCredits", InsufficientCredits),
        ("notFound", NotFound),
        ("generationFailed", GenerationFailed),
        ("INSUFFICIENT_CREDITS", InsufficientCredits),  # case and underscores do not matter
        ("somethingNew", None),
        (None, None),
    ],
)
def test_documented_codes_map_to_subclasses(code, cls):
    assert error_class_for(code) is cls


def test_hierarchy_and_defaults():
    for cls in (InvalidRequest, NotFound, HubUnavailable, OutcomeUnknown, DownloadError):
        assert issubclass(cls, HubError)
    assert issubclass(DownloadTooLarge, DownloadError)
    exc = OutcomeUnknown("maybe taken")
    assert (exc.status, exc.code, exc.message) == (None, "outcome_unknown", "maybe taken")
    assert str(exc) == "maybe taken (code outcome_unknown)"
    assert str(NotFound("gone", status=404)) == "gone (HTTP 404, code notFound)"
    assert (
        repr(HubError("x", status=418, code="teapot")) == "HubError(status=418, code='teapot', message='x')"
    )


def test_key_shaped_text_is_redacted_everywhere():
    exc = HubError(f"the hub said: bad key {SECRET}!", status=401, code=f"echo {SECRET}")
    for text in (str(exc), repr(exc), exc.message, exc.code, str(exc.args)):
        assert SECRET not in text
    assert "gih_***" in exc.message
