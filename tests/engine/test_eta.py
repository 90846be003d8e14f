"""The expected finish on the status message (`bot.eta`): learned times, a high quantile, few edits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.eta import Estimator
from bot.jobs import Job, JobParams, JobStatus

G, U, CHANNEL = 1_000_000_000_000_000_001, 2_000_000_000_000_000_002, 3_000_000_000_000_000_003


def test_the_estimate_is_a_high_quantile_of_learned_times_per_model_and_tier() -> None:
    now = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
    eta = Estimator()
    assert eta.duration("gpt-image-2", "4K") == 75.0  # the default until enough samples
    for seconds in (10, 11, 12, 13):
        eta.observe("gpt-image-2", "4K", seconds)
    assert eta.duration("gpt-image-2", "4K") == 75.0
    for seconds in (14, 15, 16, 17, 18, 40):
        eta.observe("gpt-image-2", "4K", seconds)
    assert eta.duration("gpt-image-2", "4K") == pytest.approx(20.2)  # p90 of the ten: rarely too early
    assert eta.duration("gpt-image-2", "1K") == 30.0 and eta.duration("other", "4K") == 75.0

    params = JobParams(model="gpt-image-2", prompt="p", aspect="1:1", tier="4K", quality="auto")
    running = Job(**{**_blank_job(params), "status": JobStatus.RUNNING, "submitted_at": now})
    assert eta.finish(running, now + timedelta(seconds=5)) == now + timedelta(seconds=20.2)
    queued = Job(**{**_blank_job(params), "status": JobStatus.QUEUED})
    starts = now + timedelta(minutes=2)
    assert eta.finish(queued, now, starts) == starts + timedelta(seconds=20.2)  # the queue wait added
    assert eta.finish(queued, now) is None
    posted = Job(**{**_blank_job(params), "status": JobStatus.POSTED})
    assert eta.finish(posted, now) is None

    # Shown 60 s ahead: a move of 10.2 s is not 20 % of what is left (12 s); 13.8 s is.
    eta.shown(running.id, now + timedelta(seconds=60))
    later = Job(
        **{**_blank_job(params), "status": JobStatus.RUNNING, "submitted_at": now + timedelta(seconds=50)}
    )
    assert eta.finish(later, now) == now + timedelta(seconds=70.2) and not eta.moved(later, now)
    sooner = Job(
        **{**_blank_job(params), "status": JobStatus.RUNNING, "submitted_at": now + timedelta(seconds=26)}
    )
    assert eta.moved(sooner, now)  # 46.2 vs 60: 13.8 s > 10 s and > 12 s


def _blank_job(params: JobParams) -> dict[str, Any]:
    now = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
    return {
        "id": 1,
        "guild_id": G,
        "channel_id": CHANNEL,
        "user_id": U,
        "application_id": None,
        "interaction_token": None,
        "token_expires_at": None,
        "status_message_id": None,
        "upload_limit": None,
        "locale": None,
        "reply_to_message_id": None,
        "params": params,
        "cost": 12,
        "reservation_id": None,
        "hub_generation_id": None,
        "status": JobStatus.QUEUED,
        "hub_status": None,
        "next_poll_at": None,
        "poll_attempts": 0,
        "error_attempts": 0,
        "last_error": None,
        "result_urls": [],
        "delivered_images": 0,
        "charged_credits": None,
        "posted_message_ids": [],
        "lease_owner": None,
        "lease_until": None,
        "created_at": now,
        "submitted_at": None,
        "finished_at": None,
        "posted_at": None,
    }
