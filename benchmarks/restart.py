"""Restart: 2,000 unfinished (submitted) jobs in the database, every one polled again within 10 s.

The database holds `--jobs` jobs in `submitted`, each for a generation the emulator is still running
(held until the end). A first bot process works them for `--warm` seconds, so the rows are left as
a crash leaves them (due times spread out, some jobs leased mid-step), and is then killed with
SIGKILL. A second process starts; the clock starts at its spawn. Target: every job's generation is
polled again within 10 s of that spawn. Then the generations finish and every result must be posted
exactly once. Jobs are seeded as /imagine leaves them (a live interaction token and a status
message), so results go through the interactions; `--channel-posts` seeds them without tokens, and
the report prints the floor that Discord's channel rate limit (5 posts per 5 s) then sets.

    .venv/bin/python -m benchmarks.restart [--jobs 2000] [--warm 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import aiohttp
from sqlalchemy import func, select

from benchmarks.common import Report, cli, dist, secs, wait_until, world
from bot.db.models import JobRow
from bot.job_store import JobStore
from bot.jobs import JobParams, JobStatus
from bot.quotas import QuotaService

TIERS = ("1K", "2K", "4K")


async def answered_interactions(w, count: int) -> list[tuple[int, str, int]]:
    """`count` /imagine interactions answered with a status message, as the bot leaves them:
    (application id, token, status message id) each. The commands are not synced yet (no bot has
    run), so the fake takes an unregistered /imagine for this while seeding."""
    strict, w.fake.strict_commands = w.fake.strict_commands, False
    try:
        members = [w.members[i % len(w.members)] for i in range(count)]
        issued = [await w.fake.slash(w.guild, w.channel, m, "imagine", {}, dispatch=False) for m in members]
    finally:
        w.fake.strict_commands = strict
    out: list[tuple[int, str, int]] = []
    async with aiohttp.ClientSession() as session:

        async def answer(it) -> tuple[int, str, int]:
            url = f"{w.fake.api_base}/interactions/{it.id}/{it.token}/callback?with_response=true"
            body = {"type": 4, "data": {"embeds": [{"title": "Generating"}]}}
            async with session.post(url, json=body) as r:
                data = await r.json()
            return w.fake.application_id, it.token, int(data["interaction"]["response_message_id"])

        for start in range(0, count, 100):
            out += await asyncio.gather(*(answer(it) for it in issued[start : start + 100]))
    return out


async def seed_jobs(w, count: int, rng: random.Random, *, tokens: bool) -> dict[int, str]:
    """`count` submitted jobs, each with a running emulator generation; job id -> generation id.
    With `tokens`, each job has its member's live interaction token and status message (as a
    /imagine leaves it), so results go through the interaction; without, every result is a
    channel post."""
    model = w.hub.models[0]
    answered = await answered_interactions(w, count) if tokens else []
    db = await w.open_db()
    jobs, quotas = JobStore(db), QuotaService(db)
    out: dict[int, str] = {}
    now = datetime.now(UTC)
    try:
        for i in range(count):
            interaction: dict[str, object] = {}
            if answered:
                application_id, token, message_id = answered[i]
                interaction = {
                    "application_id": application_id,
                    "interaction_token": token,
                    "token_expires_at": now + timedelta(minutes=15),
                    "status_message_id": message_id,
                }
            tier = rng.choice(TIERS)
            member = w.members[i % len(w.members)]
            gen = w.hub.create_generation(
                key=w.key,
                model=model,
                prompt=f"restart {i}",
                size="auto",
                quality=None,
                aspect="1:1",
                tier=tier,
                n=1,
                async_mode=True,
                references=[],
            )
            cost = model.credits[tier]
            reservation = await quotas.ledger.reserve(w.guild.id, member.id, (), cost)
            params = JobParams(model=model.id, prompt=f"restart {i}", aspect="1:1", tier=tier, quality="auto")
            job = await jobs.create(
                guild_id=w.guild.id,
                channel_id=w.channel,
                user_id=member.id,
                params=params,
                cost=cost,
                reservation_id=reservation.id,
                **interaction,  # type: ignore[arg-type]
            )
            await quotas.ledger.attach(reservation.id, job.id)
            submitted = now - timedelta(seconds=rng.uniform(0, 10))
            await jobs.update(
                job.id,
                None,
                status=JobStatus.SUBMITTED,
                hub_generation_id=gen.id,
                hub_status="queued",
                submitted_at=submitted,
                next_poll_at=now + timedelta(seconds=rng.uniform(0, 3)),
            )
            out[job.id] = gen.id
    finally:
        await db.close()
    return out


async def count_leased(w) -> int:
    """Jobs whose lease is held (by the killed process) right now."""
    db = await w.open_db()
    try:
        async with db.session() as s:
            query = select(func.count()).select_from(JobRow).where(JobRow.lease_until > datetime.now(UTC))
            return int((await s.execute(query)).scalar_one())
    finally:
        await db.close()


async def measure(args: argparse.Namespace) -> Report:
    report = Report("restart", f"Restart: {args.jobs} unfinished jobs, every one polled within 10 s")
    rng = random.Random(9)
    gate = asyncio.Event()
    async with world(
        "restart",
        members=100,
        duration=lambda gen: 3.0,
        per_member=100,
        gate=gate,
        after_gate=lambda gen: rng.uniform(0.0, 5.0),
    ) as w:
        job_gens = await seed_jobs(w, args.jobs, rng, tokens=not args.channel_posts)
        first = w.bot("bot-1")
        await first.start(synced=True, timeout=60)
        await asyncio.sleep(args.warm)
        polled_by_first = sum(1 for g in job_gens.values() if w.hub.generations[g].polls)
        await first.kill()
        leased = await count_leased(w)
        await w.fake.wait_disconnected(10)

        second = w.bot("bot-2")
        polls_at_kill = {g: w.hub.generations[g].polls for g in job_gens.values()}
        await second.start(synced=True, timeout=60)
        spawned = second.started_at

        def first_poll_after(gen_id: str) -> float | None:
            times = [t for t in w.hub.poll_times.get(gen_id, []) if t >= spawned]
            return times[0] - spawned if times else None

        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: all(first_poll_after(g) is not None for g in job_gens.values()),
                60,
                0.1,
                what="every job polled after the restart",
            )
        delays = [d for g in job_gens.values() if (d := first_poll_after(g)) is not None]
        gate.set()
        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: len(w.fake.posted_jobs()) >= args.jobs, 120, 0.25, what="every result posted"
            )
        posted = w.fake.posted_jobs()
        per_job = Counter(p.job_id for p in w.fake.result_posts if p.job_id is not None)
        duplicates = sum(1 for n in per_job.values() if n > 1)
        errors = second.log_errors()
        statuses = Counter(j.status for j in await w.jobs())
        second.check_alive()

    polled = dist(delays)
    report.add(
        "jobs polled again after restart",
        f"{len(delays)}/{args.jobs}",
        str(args.jobs),
        len(delays) == args.jobs,
    )
    last = polled["max"]
    report.add("time to the last job's poll (from spawn)", secs(last), "<= 10 s", last <= 10.0)
    report.add("time to poll p50 / p90", f"{secs(polled['p50'])} / {secs(polled['p90'])}")
    report.add("jobs leased by the killed process", str(leased))
    report.add("polled by the first process before the kill", f"{polled_by_first}/{args.jobs}")
    # Discord's own floor: a channel takes 5 messages per 5 s, so N channel posts need N seconds
    # whatever the bot does; results through interaction tokens have no shared bucket.
    floor = float(args.jobs) if args.channel_posts else 0.0
    report.add(
        "results posted within 120 s",
        f"{len(posted)}/{args.jobs}",
        str(args.jobs) if floor <= 120 else f"{min(args.jobs, 120)} (rate-limit floor)",
        len(posted) >= min(args.jobs, args.jobs if floor <= 120 else 120),
    )
    report.add(
        "Discord's floor for posting them all",
        f"{floor:.0f} s ({args.jobs} channel posts at 5 per 5 s)" if floor else "none (one interaction each)",
    )
    report.add("results posted twice", str(duplicates), "0", duplicates == 0)
    report.add("errors in the second process's log", str(len(errors)), "0", not errors)
    refused, clean = w.fake.refusals()
    report.add("requests Discord would refuse", refused, "none", clean)
    report.details = {
        "delays": polled,
        "statuses": dict(statuses),
        "polls_at_kill": sum(polls_at_kill.values()),
        "errors": errors[:20],
    }
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--warm", type=float, default=8.0, help="seconds the first process runs")
    parser.add_argument(
        "--channel-posts",
        action="store_true",
        help="seed jobs without interaction tokens: every result is a channel post (rate-limit bound)",
    )


if __name__ == "__main__":
    cli("restart", measure, configure)
