"""Capacity: 2,000 generations in flight in one bot process.

Members send 2,000 /imagine at `--rate` per second. The emulator holds every generation `running`
until all 2,000 are in flight (and `--hold` seconds more, under polling), then lets them finish over
`--spread` seconds. Targets: the bot's peak RSS (VmHWM) <= 250 MB, its event-loop lag p99 <= 50 ms
(the bot's own sampler, LOOP_LAG_SAMPLING=1, read from /metrics), and every result posted.

Baseline, same run and hub: 2,000 synchronous generations (`async: false`) held open by one client,
one HTTP connection per in-flight generation: open connections to the hub and memory, as ratios.

    .venv/bin/python -m benchmarks.capacity [--jobs 2000] [--rate 50] [--hold 10] [--spread 20]

`BENCH_DUMP=<file>`: also write each generation's creation, finish and poll times (JSON), to see
where the late detections come from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
from pathlib import Path

from benchmarks.common import (
    Report,
    cli,
    dist,
    established_to_port,
    histogram_from_metrics,
    histogram_quantile,
    histogram_share_at_most,
    metric_value,
    ms,
    ratio,
    run_baseline,
    secs,
    wait_until,
    world,
)

TIERS = ("1K", "2K", "4K")


async def measure(args: argparse.Namespace) -> Report:
    report = Report("capacity", f"Capacity: {args.jobs} generations in flight in one process")
    rng = random.Random(5)
    gate = asyncio.Event()
    members = max(1, args.jobs // 5)
    async with world(
        "capacity",
        members=members,
        duration=lambda gen: 3.0,
        per_member=10,
        per_guild=100_000,
        gate=gate,
        after_gate=lambda gen: rng.uniform(0.0, args.spread),
    ) as w:
        bot = w.bot()
        await bot.start(synced=True, timeout=60)
        await asyncio.sleep(1.0)
        idle_rss = bot.bot_status().get("VmRSS", 0)
        hub_port = int(w.hub_url.rsplit(":", 1)[1])
        peak = {"in_flight": 0, "hub_connections": 0}
        sampling = True

        async def sample() -> None:
            while sampling:
                peak["in_flight"] = max(peak["in_flight"], w.hub.in_flight())
                peak["hub_connections"] = max(peak["hub_connections"], established_to_port(hub_port))
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        loop = asyncio.get_running_loop()
        interactions = []
        t0 = loop.time()
        for i in range(args.jobs):
            delay = t0 + i / args.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            interactions.append(await w.imagine(w.members[i % members], resolution=rng.choice(TIERS)))
            if i % 200 == 199:
                bot.check_alive()
        submit_seconds = loop.time() - t0
        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: len(w.hub.generations) >= args.jobs, 120, 0.2, what="all generations submitted"
            )
        submitted = len(w.hub.generations)
        all_in_flight_after = loop.time() - t0
        # What the bot's CPU goes to: polls alone while every generation is held, then the finishes.
        held_polls, held_cpu = sum(g.polls for g in w.hub.generations.values()), bot.cpu()
        await asyncio.sleep(args.hold)
        held_polls = sum(g.polls for g in w.hub.generations.values()) - held_polls
        held_cpu = bot.cpu() - held_cpu
        released = time.time()
        drain_cpu = bot.cpu()
        gate.set()
        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: len(w.fake.posted_jobs()) >= args.jobs, 240, 0.25, what="every result posted"
            )
        drained = time.time() - released
        drain_cpu = bot.cpu() - drain_cpu
        sampling = False
        await sampler
        bot.check_alive()
        text = await bot.metrics()
        status = bot.bot_status()
        posted = w.fake.posted_jobs()
        lags, detect, deliver = [], [], []
        for j in await w.jobs():
            gen_id = j.hub_generation_id
            if j.id not in posted or gen_id not in w.hub.finished_at:
                continue
            finished = w.hub.finished_at[gen_id]
            lags.append(posted[j.id] - finished)
            seen = [t for t in w.hub.poll_times.get(gen_id, []) if t >= finished]
            if seen:
                detect.append(seen[0] - finished)
                deliver.append(posted[j.id] - seen[0])
        dump = os.environ.get("BENCH_DUMP")  # diagnosis: every generation's times, to a JSON file
        if dump:
            h = w.hub
            times = {g: [h.created_at.get(g), at, h.poll_times.get(g)] for g, at in h.finished_at.items()}
            await asyncio.to_thread(Path(dump).write_text, json.dumps(times))
        callbacks = dist(w.fake.callback_latencies(interactions))
        polls = sum(g.polls for g in w.hub.generations.values())
        errors = bot.log_errors()
        await bot.stop()
        bot_peak = dict(peak)

        base: dict[str, float] = {}
        if not args.no_baseline:
            w.fake.trim()
            gate.clear()
            first = len(w.hub.generations)
            peak["in_flight"] = peak["hub_connections"] = 0
            sampling = True
            sampler = asyncio.create_task(sample())
            baseline = asyncio.create_task(
                run_baseline(
                    "sync",
                    "--hub",
                    w.hub_url,
                    "--key",
                    w.key,
                    "--jobs",
                    str(args.jobs),
                    "--rate",
                    str(args.rate),
                )
            )
            try:
                await wait_until(
                    lambda: len(w.hub.generations) - first >= args.jobs or baseline.done(),
                    args.jobs / args.rate + 60,
                    0.2,
                    what="baseline generations",
                )
                await asyncio.sleep(args.hold)
            finally:
                gate.set()
            result, _ = await baseline
            sampling = False
            await sampler
            base = {
                "connections": float(peak["hub_connections"]),
                "sockets": float(result["peak_sockets"]),
                "hwm_mb": result["hwm_kb"] / 1024,
                "per_gen_kb": (result["hwm_kb"] - result["idle_rss_kb"]) / args.jobs,
                "done": float(result["done"]),
                "in_flight": float(peak["in_flight"]),
            }

    buckets = histogram_from_metrics(text, "imagehub_event_loop_lag_seconds")
    lag_p50 = histogram_quantile(buckets, 0.5)
    lag_p99 = histogram_quantile(buckets, 0.99)
    within = histogram_share_at_most(buckets, 0.05)
    hwm_mb = status.get("VmHWM", 0) / 1024
    per_gen_kb = (status.get("VmHWM", 0) - idle_rss) / args.jobs
    ld = dist(lags)
    report.add(
        "generations in flight at once (peak)",
        f"{bot_peak['in_flight']}",
        f"{args.jobs}",
        bot_peak["in_flight"] >= args.jobs,
        baseline=f"{int(base['in_flight'])}" if base else "",
    )
    report.add(
        "bot peak RSS (VmHWM)",
        f"{hwm_mb:.0f} MB",
        "<= 250 MB",
        hwm_mb <= 250,
        baseline=f"{base['hwm_mb']:.0f} MB" if base else "",
    )
    report.add(
        "memory per in-flight generation",
        f"{per_gen_kb:.1f} kB",
        "",
        None,
        baseline=f"{base['per_gen_kb']:.1f} kB" if base else "",
        ratio=ratio(per_gen_kb, base.get("per_gen_kb", 0)),
    )
    report.add(
        "open connections to the hub (peak)",
        str(bot_peak["hub_connections"]),
        "",
        None,
        baseline=str(int(base["connections"])) if base else "",
        ratio=ratio(bot_peak["hub_connections"], base.get("connections", 0)),
    )
    report.add("event-loop lag p50", ms(lag_p50))
    report.add("event-loop lag p99", ms(lag_p99), "<= 50 ms", lag_p99 <= 0.05)
    report.add("loop-lag samples <= 50 ms", f"{within * 100:.2f} %", ">= 99 %", within >= 0.99)
    report.add("results posted", f"{len(posted)}/{args.jobs}", str(args.jobs), len(posted) >= args.jobs)
    report.add("all posted after release", secs(drained))
    report.add("result lag under load p50 / p99", f"{secs(ld['p50'])} / {secs(ld['p99'])}")
    dd, dl = dist(detect), dist(deliver)
    report.add("  of which: finish -> detecting poll p50 / p99", f"{secs(dd['p50'])} / {secs(dd['p99'])}")
    report.add("  of which: detecting poll -> posted p50 / p99", f"{secs(dl['p50'])} / {secs(dl['p99'])}")
    report.add("/imagine callback p99 at this rate", ms(callbacks["p99"]))
    report.add("hub polls while held", str(polls))
    report.add(
        "bot CPU while held (polls only)",
        f"{held_cpu:.1f} s in {args.hold:g} s: {held_polls / args.hold:.0f} polls/s, "
        f"{held_cpu / max(held_polls, 1) * 1000:.2f} ms each",
    )
    report.add("bot CPU from release to the last result", f"{drain_cpu:.1f} s in {drained:.1f} s")
    report.add("errors in the bot's log", str(len(errors)), "0", not errors)
    refused, clean = w.fake.refusals()
    report.add("requests Discord would refuse", refused, "none", clean)
    report.details = {
        "submitted": submitted,
        "submit_seconds": submit_seconds,
        "all_in_flight_after": all_in_flight_after,
        "loop_lag_buckets": buckets,
        "loop_lag_count": metric_value(text, "imagehub_event_loop_lag_seconds_count"),
        "result_lag": ld,
        "callbacks": callbacks,
        "baseline": base,
        "errors": errors[:20],
    }
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50.0, help="/imagine per second")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds all stay in flight")
    parser.add_argument("--spread", type=float, default=20.0, help="seconds over which they finish")
    parser.add_argument("--no-baseline", action="store_true")


if __name__ == "__main__":
    cli("capacity", measure, configure)
