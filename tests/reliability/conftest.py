"""Reliability fixtures: the e2e bed with fast timings, and assertions over what everyone saw.

`rbed` is the bed (see tests/bed.py) with the waits that make faults slow in production shrunk
(`FAST`): the poll intervals, the error backoff, the hub client's per-attempt timeout and retry
backoff, and the image download timeout. The behaviour is the same; only the clocks are shorter.
A test's own `timings` marks apply on top.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Collection
from typing import Any

import pytest
from sqlalchemy import select, text

from bot.db.models import QuotaLedger, QuotaReservation
from bot.hub.emulator import EmulatorState
from bot.jobs import Job
from tests.bed import TEST_TIMINGS, Bed, open_bed, timings_for
from tests.fakediscord import FakeDiscord, FakeMessage, RecordedRequest

GENERATIONS = "/api/v1/images/generations"
POLLS = "/api/v1/generations"


FAST = dataclasses.replace(
    TEST_TIMINGS,
    poll_first=0.05,
    poll_step=0.1,
    poll_slow_after=60.0,
    poll_slow_step=0.5,
    error_backoff=0.02,
    error_backoff_max=0.32,
    hub_timeout=0.5,
    hub_backoff=0.01,
    download_timeout=0.5,
)


@pytest.fixture
async def rbed(
    fake_discord: FakeDiscord,
    hub: tuple[str, EmulatorState],
    bed_database_url: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Bed]:
    async with open_bed(fake_discord, hub, bed_database_url, timings_for(request, FAST)) as bed:
        yield bed


# -- a database write that fails ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def failing_write(bed: Bed, event: str, when: str, table: str = "jobs") -> AsyncIterator[None]:
    """Make every `event` ("INSERT" / "UPDATE") on `table` for which `when` (SQL over NEW, and OLD
    for updates) holds fail, as a full disk would: a real trigger in the database (SQLite or
    PostgreSQL), dropped on exit (a PostgreSQL test database is emptied and reused)."""
    name = f"fail_{event.lower()}_{uuid.uuid4().hex[:8]}"
    sqlite = bed.services.db.is_sqlite
    async with bed.services.db.transaction() as s:
        if sqlite:
            await s.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW WHEN {when} "
                    "BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END"
                )
            )
        else:
            await s.execute(
                text(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'No space left on device (injected)'; END $$"
                )
            )
            await s.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW "
                    f"WHEN ({when}) EXECUTE FUNCTION {name}()"
                )
            )
    try:
        yield
    finally:
        async with bed.services.db.transaction() as s:
            await s.execute(text(f"DROP TRIGGER IF EXISTS {name}" + ("" if sqlite else f" ON {table}")))
            if not sqlite:
                await s.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))


# -- what the database holds ---------------------------------------------------------------------


async def reservations(bed: Bed) -> list[QuotaReservation]:
    async with bed.services.db.session() as s:
        return list((await s.execute(select(QuotaReservation).order_by(QuotaReservation.id))).scalars())


async def ledger(bed: Bed) -> list[tuple[str, int]]:
    """(kind, credits) of every ledger row, oldest first."""
    async with bed.services.db.session() as s:
        rows = (await s.execute(select(QuotaLedger).order_by(QuotaLedger.id))).scalars()
        return [(r.kind, r.credits) for r in rows]


async def assert_nothing_held(bed: Bed) -> None:
    held = [r.id for r in await reservations(bed) if r.state == "held"]
    assert not held, f"reservations still held: {held}"


async def spent(bed: Bed, member: Any = None) -> int:
    """What the member's budget counts as used this period (settled + held)."""
    member = member or bed.d.alice
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, member.id, ())
    return budget.spent + budget.reserved


async def all_jobs(bed: Bed) -> list[Job]:
    jobs = await bed.services.jobs.list_for_member(bed.guild_id, bed.d.alice.id, limit=500)
    return sorted(jobs, key=lambda j: j.id)


# -- what the hub saw ------------------------------------------------------------------------------


def hub_posts(bed: Bed) -> int:
    return len(bed.hub.requests_to(GENERATIONS, "POST"))


def hub_polls(bed: Bed) -> int:
    return sum(1 for r in bed.hub.requests if r.path.startswith(POLLS + "/"))


def hub_downloads(bed: Bed) -> int:
    return sum(1 for r in bed.hub.requests if r.path.startswith("/files/"))


# -- what Discord holds ----------------------------------------------------------------------------


def result_messages(bed: Bed, job: Job) -> list[FakeMessage]:
    """Every live message carrying this job's images, anywhere."""
    found = []
    for channel in bed.d.guild.channels:
        for m in bed.fake.messages(channel):
            if m.attachments and any(f"job #{job.id}" in str(e) for e in m.embeds):
                found.append(m)
    return found


def text_of(message: FakeMessage | Any) -> str:
    """Content and embeds of a message or callback, as one searchable string."""
    return f"{getattr(message, 'content', '')} {getattr(message, 'embeds', '')}"


def bot_writes(bed: Bed) -> list[RecordedRequest]:
    """Every request with which the bot created or edited a message (channel posts, interaction
    callbacks, webhook followups and edits)."""
    out = []
    for r in bed.fake.requests:
        post = r.method == "POST" and r.path.startswith("/channels/") and r.path.endswith("/messages")
        callback = r.path.startswith("/interactions/") and r.path.endswith("/callback")
        webhook = r.path.startswith("/webhooks/") and r.method in ("POST", "PATCH")
        if post or callback or webhook:
            out.append(r)
    return out


def channel_requests(bed: Bed, channel_id: int) -> list[RecordedRequest]:
    return [r for r in bed.fake.requests if r.path.startswith(f"/channels/{channel_id}/")]


def message_payload(r: RecordedRequest) -> dict[str, Any] | None:
    """The message part of a bot write (a callback's `data`, else the body), if it has content."""
    body = r.json if isinstance(r.json, dict) else None
    if body is None:
        return None
    if r.path.endswith("/callback"):
        body = body.get("data") if isinstance(body.get("data"), dict) else None
    if body is None or not ({"content", "embeds"} & body.keys()):
        return None
    return body


def assert_mentions_disabled(bed: Bed, may_ping: Collection[int] = ()) -> int:
    """Every message the bot sent or edited disables @everyone/@here and role pings, and pings no
    member except `may_ping` (a job's owner, told in the channel when the interaction is gone).
    Returns how many writes were checked."""
    checked = 0
    for r in bot_writes(bed):
        body = message_payload(r)
        if body is None:
            continue
        allowed = body.get("allowed_mentions")
        assert isinstance(allowed, dict), f"{r.route} sent no allowed_mentions: {body}"
        assert allowed.get("parse") == [], f"{r.route}: {allowed}"
        assert not allowed.get("roles"), f"{r.route}: {allowed}"
        assert {int(u) for u in allowed.get("users", [])} <= set(may_ping), f"{r.route}: {allowed}"
        checked += 1
    return checked
