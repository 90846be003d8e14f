"""Result lag and hub polls: from the hub marking a generation succeeded to its files posted in Discord.

Targets: lag p50 <= 1 s and p99 <= 2.5 s, while the hub sees at most 1 + ceil(generation seconds / 3)
polls per job. Members send /imagine at a steady rate with random resolution tiers; the emulator gives
each generation a duration (default: log-normal around 8/12/16 s by tier, clipped to 5-20 s;
`--distribution uniform`: 5-20 s whatever the tier). The first `--warmup` jobs are not in the lag
figures (the bot learns generation times as it goes) but are in the poll check.

Baseline, same run and hub: a naive poller (one task per job, fixed 1 s sleep between polls, then
download and edit its own interaction's answer into the result, waiting out any 429 as the bot
does), as a ratio; 429 answers are counted per process.

    .venv/bin/python -m benchmarks.lag [--jobs 300] [--warmup 60] [--rate 12] [--distribution realistic]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import re
import time

from benchmarks.common import (
    Report,
    cli,
    dist,
    metric_value,
    ms,
    poll_budget,
    ratio,
    realistic_duration,
    run_baseline,
    secs,
    uniform_duration,
    wait_until,
    world,
)

TIERS = ("1K", "2K", "4K")
_NAIVE_RE = re.compile(r"naive generation ([\w-]+)")


async def measure(args: argparse.Namespace) -> Report:
    label = "log-normal by tier, 5-20 s" if args.distribution == "realistic" else "uniform 5-20 s"
    report = Report(
        f"lag-{args.distribution}", f"Result lag and polls ({label}), {args.jobs} jobs at {args.rate:g}/s"
    )
    rng = random.Random(11)
    duration = realistic_duration(rng) if args.distribution == "realistic" else uniform_duration(rng)
    async with world("lag", members=args.members, duration=duration, per_member=50) as w:
        bot = w.bot()
        await bot.start(synced=True, timeout=60)
        loop = asyncio.get_running_loop()

        sent = []

        async def send(count: int) -> None:
            start = loop.time()
            for i in range(count):
                delay = start + i / args.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent.append(await w.imagine(w.members[i % len(w.members)], resolution=rng.choice(TIERS)))

        await send(args.warmup)
        await wait_until(lambda: len(w.fake.posted_jobs()) >= args.warmup, 60, 0.2, what="warm-up results")
        measured_from = time.time()
        await send(args.jobs)
        total = args.warmup + args.jobs
        await wait_until(lambda: len(w.fake.posted_jobs()) >= total, 90, 0.2, what="every result posted")
        bot.check_alive()
        posted = w.fake.posted_jobs()
        lags, polls, over, measured_polls, detect, deliver = [], [], 0, [], [], []
        for job in await w.jobs():
            gen_id = job.hub_generation_id
            if gen_id is None or gen_id not in w.hub.finished_at:
                continue
            seconds = w.hub.finished_at[gen_id] - w.hub.created_at[gen_id]
            n = w.hub.generations[gen_id].polls
            polls.append(n)
            over += n > poll_budget(seconds)
            if job.created_at.timestamp() >= measured_from and job.id in posted:
                lags.append(posted[job.id] - w.hub.finished_at[gen_id])
                seen = [t for t in w.hub.poll_times.get(gen_id, []) if t >= w.hub.finished_at[gen_id]]
                if seen:
                    detect.append(seen[0] - w.hub.finished_at[gen_id])
                    deliver.append(posted[job.id] - seen[0])
                measured_polls.append(n / poll_budget(seconds))
        errors = bot.log_errors()
        text = await bot.metrics()
        commits = metric_value(text, "imagehub_db_commits_total") or 0.0
        writes = metric_value(text, "imagehub_db_writes_total") or 0.0
        first = [it.callback_attempts[0] for it in sent if it.callback_attempts]
        deferred = sum(1 for cb in first if cb.type == 5)
        callbacks = dist(w.fake.callback_latencies(sent))
        await bot.stop()

        bot_429 = sum(1 for r in w.fake.invalid_requests if r.status == 429)
        base: dict[str, float] = {}
        if not args.no_baseline:
            posts_before = len(w.fake.result_posts)
            gens_before = set(w.hub.generations)
            invalid_before = len(w.fake.invalid_requests)

            # One interaction per naive job, created at the members' pace as /imagine gives them to
            # the bot (Discord wants the answer within 3 s): the baseline answers each through its
            # own token, under the same rate limits (and waits out any 429).
            async def feed(stdin: asyncio.StreamWriter) -> None:
                start = loop.time()
                for i in range(args.jobs):
                    delay = start + i / args.rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    member, opts = w.members[i % len(w.members)], {"prompt": "naive"}
                    it = await w.fake.slash(w.guild, w.channel, member, "imagine", opts, dispatch=False)
                    stdin.write(f"{it.id} {it.token}\n".encode())
                    await stdin.drain()

            result, _ = await run_baseline(
                "naive",
                "--hub",
                w.hub_url,
                "--key",
                w.key,
                "--discord",
                w.fake.api_base,
                "--application",
                str(w.fake.application_id),
                feed=feed,
            )
            naive_refused = w.fake.invalid_requests[invalid_before:]
            naive_lags, naive_polls, naive_over = [], [], 0
            for post in w.fake.result_posts[posts_before:]:
                found = _NAIVE_RE.search(post.text)
                if found and found[1] in w.hub.finished_at:
                    naive_lags.append(post.at - w.hub.finished_at[found[1]])
            for gen_id in set(w.hub.generations) - gens_before:
                if gen_id in w.hub.finished_at:
                    seconds = w.hub.finished_at[gen_id] - w.hub.created_at[gen_id]
                    naive_polls.append(w.hub.generations[gen_id].polls)
                    naive_over += naive_polls[-1] > poll_budget(seconds)
            nd = dist(naive_lags)
            base = {
                "p50": nd["p50"],
                "p90": nd["p90"],
                "p99": nd["p99"],
                "polls": sum(naive_polls) / max(1, len(naive_polls)),
                "over": naive_over,
                "n": len(naive_lags),
                "errors": float(result.get("errors", 0)),
                "429": float(sum(1 for r in naive_refused if r.status == 429)),
                "429_seen": float(result.get("429", 0)),
            }

    d = dist(lags)
    mean_polls = sum(polls) / max(1, len(polls))
    nb = base.get

    def b(key: str) -> str:
        return secs(base[key]) if key in base else ""

    report.add(
        "results posted",
        f"{len(posted)}/{total}",
        str(total),
        len(posted) >= total,
        baseline=f"{int(base['n'])}/{args.jobs}, {int(base['errors'])} failed" if base else "",
    )
    report.add(
        "lag p50",
        secs(d["p50"]),
        "<= 1 s",
        d["p50"] <= 1.0,
        baseline=b("p50"),
        ratio=ratio(d["p50"], nb("p50", math.nan)),
    )
    report.add(
        "lag p90", secs(d["p90"]), "", None, baseline=b("p90"), ratio=ratio(d["p90"], nb("p90", math.nan))
    )
    report.add(
        "lag p99",
        secs(d["p99"]),
        "<= 2.5 s",
        d["p99"] <= 2.5,
        baseline=b("p99"),
        ratio=ratio(d["p99"], nb("p99", math.nan)),
    )
    report.add(
        "hub polls per job (mean)",
        f"{mean_polls:.2f}",
        "",
        None,
        baseline=f"{base['polls']:.2f}" if base else "",
        ratio=ratio(mean_polls, nb("polls", math.nan)),
    )
    report.add(
        "jobs over 1 + ceil(s/3) polls",
        f"{over}/{len(polls)}",
        "0",
        over == 0,
        baseline=f"{int(base['over'])}/{int(base['n'])}" if base else "",
    )
    dd, dl = dist(detect), dist(deliver)
    report.add("  of which: finish -> detecting poll p50 / p99", f"{secs(dd['p50'])} / {secs(dd['p99'])}")
    report.add("  of which: detecting poll -> posted p50 / p99", f"{secs(dl['p50'])} / {secs(dl['p99'])}")
    report.add('/imagine first answer p99; "thinking…" first', f"{ms(callbacks['p99'])}; {deferred}")
    report.add("polls used / allowed (mean)", f"{sum(measured_polls) / max(1, len(measured_polls)):.2f}")
    per_job = commits / max(1, len(posted))
    report.add(
        "database commits (writes) per posted job",
        f"{per_job:.2f} ({writes / max(1, len(posted)):.2f})",
        "<= 3",
        per_job <= 3,
    )
    report.add("errors in the bot's log", str(len(errors)), "0", not errors)
    refused, _ = w.fake.refusals()
    report.add("requests Discord would refuse (whole run)", refused)
    report.add(
        "429 answers, per process",
        f"bot {bot_429}",
        "bot: 0",
        bot_429 == 0,
        baseline=f"naive {int(base['429'])} (waited out)" if base else "",
    )
    report.details = {"lag": d, "polls_mean": mean_polls, "baseline": base, "errors": errors[:20]}
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--rate", type=float, default=12.0, help="/imagine per second")
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--distribution", choices=["realistic", "uniform"], default="realistic")
    parser.add_argument("--no-baseline", action="store_true")


if __name__ == "__main__":
    cli("lag", measure, configure)
