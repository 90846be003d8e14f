"""Response: a burst of 500 /imagine within 1 s from 100 members.

Targets: the first answer (the interaction callback) within 100 ms (p99) of the fake dispatching
INTERACTION_CREATE, at least 95 % of them the real answer (not "thinking…"); the status message
naming its job within 1 s (p99); the last result posted within 3 s of the hub finishing the last
generation (the hub takes `--hub-seconds`, 2 s, per generation; each result goes through its own
interaction token, so Discord's rate limits set no shared floor). Every request is within the
members' budgets and concurrency limits, so each one takes the full accepting path (checks,
reservation, job, public status message).

    .venv/bin/python -m benchmarks.response [--requests 500] [--members 100] [--window 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections import Counter

from benchmarks.common import (
    Report,
    cli,
    dist,
    ms,
    realistic_duration,
    secs,
    wait_until,
    world,
)
from tests.fakediscord import FakeInteraction

TIERS = ("1K", "2K", "4K")


class LagProbe:
    """Event-loop lag of the benchmark's own process (the fake Discord), to tell its delays apart."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append(loop.time() - started - 0.01)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def burst(args: argparse.Namespace) -> Report:
    report = Report(
        "response", f"Response: {args.requests} /imagine in {args.window:g} s from {args.members} members"
    )
    rng = random.Random(1)
    per_member = -(-args.requests // args.members) + 2
    duration = realistic_duration(rng) if args.hub_seconds <= 0 else (lambda gen: args.hub_seconds)
    async with world("response", members=args.members, duration=duration, per_member=per_member) as w:
        bot = w.bot()
        await bot.start(synced=True, timeout=60)
        # Warm-up, as a running bot would be: the model catalog is fetched by the first /imagine.
        warm = [await w.imagine(w.members[i]) for i in range(3)]
        await wait_until(
            lambda: all(it.token in w.fake.callback_at for it in warm), 30, what="warm-up callbacks"
        )
        await asyncio.sleep(1.0)

        loop = asyncio.get_running_loop()
        interactions: list[FakeInteraction] = []
        cpu_before = bot.cpu()
        with LagProbe() as probe:
            start = loop.time() + 0.05
            for i in range(args.requests):
                delay = start + i * args.window / args.requests - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                member = w.members[i % args.members]
                if args.command == "imagine":
                    interactions.append(await w.imagine(member, resolution=rng.choice(TIERS)))
                else:  # a floor: a command that only reads the cached model list
                    interactions.append(await w.fake.slash(w.guild, w.channel, member, args.command))
            spread = interactions[-1].created_at - interactions[0].created_at
            await wait_until(
                lambda: all(it.token in w.fake.callback_at for it in interactions),
                60,
                what="every callback",
            )
            harness_lag = list(probe.samples)
            cpu_used = bot.cpu() - cpu_before
            wall = loop.time() - start
        latencies = w.fake.callback_latencies(interactions)
        accepted = sum(
            1
            for it in interactions
            if it.callback_attempts
            and it.callback_attempts[0].accepted
            and (args.command != "imagine" or not it.callback_attempts[0].ephemeral)
        )
        d = dist(latencies)
        report.add(
            "callbacks received",
            f"{len(latencies)}/{args.requests}",
            f"{args.requests}",
            len(latencies) == args.requests,
        )
        report.add(
            "accepted (public status message)",
            f"{accepted}/{args.requests}",
            f"{args.requests}",
            accepted == args.requests,
        )
        report.add("dispatch spread", secs(spread), f"<= {args.window:g} s", spread <= args.window + 0.05)
        report.add("callback p50", ms(d["p50"]))
        report.add("callback p90", ms(d["p90"]))
        report.add("callback p99", ms(d["p99"]), "<= 100 ms", d["p99"] <= 0.1)
        report.add("callback max", ms(d["max"]))
        deferred = sum(1 for it in interactions if it.callback_attempts and it.callback_attempts[0].type == 5)
        real = args.requests - deferred
        report.add(
            'real first answers (not "thinking…")',
            f"{real}/{args.requests}",
            ">= 95 %",
            real >= 0.95 * args.requests,
        )
        if args.command == "imagine":
            with contextlib.suppress(TimeoutError):
                await wait_until(
                    lambda: all(it.token in w.fake.status_at for it in interactions),
                    60,
                    what="status messages",
                )
            answered = dist(
                [
                    w.fake.status_at[it.token] - it.created_at
                    for it in interactions
                    if it.token in w.fake.status_at
                ]
            )
            both = f"{secs(answered['p50'])} / {secs(answered['p99'])}"
            report.add("status message with its job # p50 / p99", both, "p99 <= 1 s", answered["p99"] <= 1.0)
        hl = dist(harness_lag)
        report.add("harness loop lag p99 (fake Discord side)", ms(hl["p99"]))
        report.add("bot CPU until the last callback", f"{cpu_used:.1f} s in {wall:.1f} s")

        # Then every result is posted (the burst's jobs finish 5-20 s later).
        t0 = time.monotonic()
        total = (args.requests if args.command == "imagine" else 0) + len(warm)
        with contextlib.suppress(TimeoutError):
            await wait_until(lambda: len(w.fake.posted_jobs()) >= total, 120, 0.2, what="all results posted")
        posted_at = w.fake.posted_jobs()
        posted = len(posted_at)
        report.add(
            "results posted",
            f"{posted}/{total} in {time.monotonic() - t0:.0f} s",
            f"{total}",
            posted >= total,
        )
        hub_done = max(w.hub.finished_at.values(), default=0.0)
        behind = max(posted_at.values(), default=0.0) - hub_done
        report.add(
            "last result posted after the hub's last finish",
            secs(behind),
            "<= 3 s (Discord floor: none, one token each)",
            behind <= 3.0,
        )
        bot.check_alive()
        status = bot.bot_status()
        report.add("bot peak RSS", f"{status.get('VmHWM', 0) / 1024:.0f} MB")
        errors = bot.log_errors()
        report.add("errors in the bot's log", str(len(errors)), "0", not errors)
        refused, clean = w.fake.refusals()
        report.add("requests Discord would refuse", refused, "none", clean)
        refusals = Counter(
            str(it.callback_attempts[0].embeds)[:160]
            for it in interactions
            if it.callback_attempts and it.callback_attempts[0].ephemeral
        )
        report.details = {
            "callback": d,
            "harness_lag": hl,
            "errors": errors[:20],
            "spread": spread,
            "refusals": refusals.most_common(5),
        }
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--command", default="imagine", help="imagine (the target) or models (a floor)")
    parser.add_argument(
        "--hub-seconds", type=float, default=2.0, help="seconds per generation (0: realistic 5-20 s)"
    )


if __name__ == "__main__":
    cli("response", burst, configure)
