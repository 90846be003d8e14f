"""Logging set-up: one line per event, with secrets redacted from every record.

Redaction works on the formatted text (message, arguments and traceback), so a hub key that
slips into an exception message or a third-party log line is still masked.
"""

from __future__ import annotations

import logging
import re
from typing import IO, Any

# Hub keys look like gih_live_<32 chars>; also catch Bearer headers, Discord bot tokens,
# interaction tokens (base64 of "interaction:…", alone or in webhook/callback URLs).
_SECRET_PATTERNS = (
    re.compile(r"gih_(?:live|test)_[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{12,}"),
    re.compile(r"[MNO][A-Za-z\d_\-]{23,25}\.[A-Za-z\d_\-]{6}\.[A-Za-z\d_\-]{27,}"),
    re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._\-]{20,}"),
    re.compile(r"aW50ZXJhY3Rpb246[A-Za-z0-9_\-]+"),
)


def redact(text: str) -> str:
    """Mask anything shaped like a secret, keeping at most the last four characters."""

    def _mask(match: re.Match[str]) -> str:
        if match.lastindex:  # "Bearer <token>", "/webhooks/<id>/<token>"
            return f"{match.group(1)}***"
        value = match.group(0)
        prefix = "gih_live_" if value.startswith("gih_live_") else ""
        return f"{prefix}***{value[-4:]}"

    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(_mask, text)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats a record as usual, then redacts the whole line, traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingFilter(logging.Filter):
    """Redacts records before any handler sees them (for handlers we do not format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def make_handler(stream: IO[str] | None = None) -> logging.Handler:
    """The bot's log handler: one redacted line per record (stderr unless a stream is given)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    return handler


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr as `time level logger event key=value ...`, redacted."""
    root = logging.getLogger()
    root.handlers[:] = [make_handler()]
    root.setLevel(level)
    quiet = max(logging.INFO, logging.getLevelName(level))
    logging.getLogger("discord").setLevel(quiet)
    # aiosqlite's DEBUG lines carry every statement with its parameters (tokens, prompts).
    logging.getLogger("aiosqlite").setLevel(quiet)


def kv(event: str, **fields: Any) -> str:
    """One structured log line: `event key=value ...` (None fields dropped)."""
    parts = [event] + [f"{k}={v}" for k, v in fields.items() if v is not None]
    return " ".join(parts)
