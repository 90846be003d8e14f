"""Helpers for the queue, cancel, filter, history and usage tests."""

from __future__ import annotations

from typing import Any

import pytest

from bot.jobs import Job
from tests.bed import Bed
from tests.fakediscord.models import FakeMessage

# The publisher's edit throttle and the queue's retry after it, shortened (same logic).
QUICK = pytest.mark.timings(progress_interval=0.2, queue_retry_delay=0.25)
# Polls soon after submitting, and often.
FAST_POLLS = pytest.mark.timings(poll_first=0.05, poll_step=0.1)


def embed_field(message: FakeMessage | None, name: str) -> str | None:
    for embed in message.embeds if message is not None else []:
        for field in embed.get("fields") or []:
            if field.get("name") == name:
                return str(field.get("value"))
    return None


def text(item: Any) -> str:
    return str(getattr(item, "embeds", item))


def status_message(bed: Bed, job: Job) -> FakeMessage:
    assert job.status_message_id is not None
    return bed.fake.message(job.status_message_id)


async def wait_position(bed: Bed, job: Job, position: int, timeout: float = 10.0) -> FakeMessage:
    message = status_message(bed, job)
    expected = f"#{position} in this server's queue"
    await bed.fake.wait_for(
        lambda: embed_field(message, "Position") == expected,
        timeout,
        what=f"job {job.id} shown at position {position} (shows {embed_field(message, 'Position')!r})",
    )
    return message


def custom_ids(message: FakeMessage) -> list[str]:
    return [c["custom_id"] for c in message.walk_components() if "custom_id" in c]
