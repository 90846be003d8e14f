"""Shared pieces of the benchmarks: statistics, the instrumented fake Discord and hub emulator, the bot
subprocess, a prepared guild and database, and result reporting.

Everything listens on 127.0.0.1. The fake Discord and the emulator run in the benchmark's own process
(one core); the bot runs as `python -m bot` in a subprocess (the other core): the tests' `BotProcess`
(`tests/botprocess.py`), pointed at the fake with `FakeDiscord.subprocess_env()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import select

from bot.db import Database
from bot.db.models import JobRow
from bot.guild_settings import GuildSettingsStore
from bot.hub.emulator import EmulatorState, GenerationEvent, GenerationRecord, serving
from bot.keys import KeyVault
from bot.quotas import QuotaService
from tests.bed import hub_settings
from tests.botprocess import BotProcess, free_port
from tests.databases import scratch_database, sqlite_url
from tests.fakediscord import FakeDiscord, FakeGuild, FakeInteraction, FakeMember, RecordedRequest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# -------------------------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def dist(values: Sequence[float]) -> dict[str, float]:
    """n, mean, p50, p90, p99 and max of some values."""
    return {
        "n": len(values),
        "mean": sum(values) / len(values) if values else math.nan,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def histogram_from_metrics(text: str, name: str) -> list[tuple[float, float]]:
    """Cumulative `(le, count)` buckets of a Prometheus histogram in exposition text."""
    buckets = []
    pattern = re.compile(rf'^{re.escape(name)}_bucket\{{(?:[^}}]*,)?le="([^"]+)"[^}}]*\}} ([0-9.e+-]+)$')
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            le = math.inf if m[1] == "+Inf" else float(m[1])
            buckets.append((le, float(m[2])))
    return sorted(buckets)


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """Like PromQL's histogram_quantile (q in 0-1): linear within the bucket holding the rank."""
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            width = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 1.0)
        prev_le, prev_count = le, count
    return prev_le


def histogram_share_at_most(buckets: Sequence[tuple[float, float]], bound: float) -> float:
    """The share of observations <= `bound` (exact when `bound` is a bucket edge)."""
    total = buckets[-1][1] if buckets else 0.0
    for le, count in buckets:
        if le >= bound - 1e-12:
            return count / total if total else math.nan
    return 1.0


def metric_value(text: str, name: str) -> float | None:
    """The value of an unlabelled sample `name` in exposition text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# -------------------------------------------------------------------------------------------- hub


TIER_MEDIAN = {"1K": 8.0, "2K": 12.0, "4K": 16.0}


def realistic_duration(rng: random.Random, sigma: float = 0.15) -> Callable[[GenerationRecord], float]:
    """Seconds a generation takes: log-normal around a median that grows with the resolution tier
    (1K 8 s, 2K 12 s, 4K 16 s; +10 % per extra image), clipped to 5-20 s."""

    def duration(gen: GenerationRecord) -> float:
        median = TIER_MEDIAN.get(gen.tier, 12.0) * (1 + 0.1 * (gen.n - 1))
        return min(20.0, max(5.0, median * math.exp(rng.gauss(0.0, sigma))))

    return duration


def uniform_duration(rng: random.Random, low: float = 5.0, high: float = 20.0) -> Callable[..., float]:
    """Seconds a generation takes: uniform in [low, high], whatever was asked."""
    return lambda gen: rng.uniform(low, high)


class BenchHub(EmulatorState):
    """The emulator with a per-generation `duration(gen)` and timestamps (wall clock, `time.time()`).

    With `gate` set (an unset `asyncio.Event`), generations stay `running` until the gate opens, then
    finish `after_gate(gen)` seconds later. Records `created_at`, `finished_at` and every poll's time, by
    generation id, through the emulator's public hooks (`duration`, `gate`, `observers`).
    """

    def __init__(
        self,
        duration: Callable[[GenerationRecord], float],
        *,
        gate: asyncio.Event | None = None,
        after_gate: Callable[[GenerationRecord], float] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(duration=duration, gate=gate, after_gate=after_gate, **options)
        self.created_at: dict[str, float] = {}
        self.finished_at: dict[str, float] = {}
        self.poll_times: dict[str, list[float]] = {}
        self.observers.append(self._observe)

    def in_flight(self) -> int:
        return len(self.generations) - len(self.finished_at)

    def _observe(self, event: GenerationEvent, gen: GenerationRecord) -> None:
        now = time.time()
        if event == "created":
            self.created_at[gen.id] = now
        elif event == "finished":
            self.finished_at[gen.id] = now
        else:
            self.poll_times.setdefault(gen.id, []).append(now)


def poll_budget(seconds: float) -> int:
    """The target's poll allowance for a generation of `seconds`: 1 + ceil(seconds / 3)."""
    return 1 + math.ceil(seconds / 3 - 1e-9)


def established_to_port(port: int) -> int:
    """Open TCP connections whose local end is 127.0.0.1:`port` (the server side), from /proc/net/tcp."""
    count = 0
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, state = parts[1], parts[3]
            if state == "01" and int(local.split(":")[1], 16) == port:
                count += 1
    return count


# -------------------------------------------------------------------------------------------- fake Discord


@dataclass
class ResultPost:
    at: float  # time.time() when the fake received the upload
    job_id: int | None
    text: str
    files: int


_JOB_RE = re.compile(r"job #(\d+)")


class BenchFake(FakeDiscord):
    """The fake Discord, recording when each interaction callback arrived and every upload of files.

    Everything the real Discord enforces stays on: the official spec's validation (in the fake's
    worker process), the permissions, and the rate limits at their realistic defaults
    (`fake.rate_limits`: 5 messages per 5 s per channel, webhook/interaction tokens bucketed per
    token, the global 50 requests/s that interaction endpoints are exempt from). The timings come
    from the fake's public `observers` and `RecordedRequest.received_at`, not from its handlers."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("heartbeat_ack_delay", 0.0)
        super().__init__(**options)
        self.callback_at: dict[str, float] = {}  # interaction token -> loop time the callback arrived
        self.status_at: dict[str, float] = {}  # token -> loop time the answer first named its job
        self.result_posts: list[ResultPost] = []
        self.observers.append(self._observe)

    def _observe(self, rec: RecordedRequest) -> None:
        parts = rec.path.split("/")
        if rec.method == "POST" and rec.path.endswith("/callback") and len(parts) == 5:
            self.callback_at.setdefault(parts[3], rec.received_at)
            if 200 <= rec.status < 300 and "job #" in json.dumps(rec.json):  # the first answer names it
                self.status_at.setdefault(parts[3], rec.received_at)
            return
        ok = 200 <= rec.status < 300
        webhook_edit = rec.method == "PATCH" and rec.path.startswith("/webhooks/") and len(parts) >= 4
        if webhook_edit and ok and parts[3] not in self.status_at and "job #" in json.dumps(rec.json):
            self.status_at[parts[3]] = rec.received_at
        channel_post = (
            rec.method == "POST" and rec.path.startswith("/channels/") and rec.path.endswith("/messages")
        )
        followup = rec.method == "POST" and rec.path.startswith("/webhooks/")
        if (webhook_edit or channel_post or followup) and rec.files and ok:
            text = json.dumps(rec.json) if rec.json is not None else ""
            found = _JOB_RE.search(text)
            self.result_posts.append(
                ResultPost(time.time(), int(found[1]) if found else None, text, len(rec.files))
            )

    def posted_jobs(self) -> dict[int, float]:
        """Job id -> when its files were first posted."""
        out: dict[int, float] = {}
        for post in self.result_posts:
            if post.job_id is not None:
                out.setdefault(post.job_id, post.at)
        return out

    def callback_latencies(self, interactions: Iterable[FakeInteraction]) -> list[float]:
        """Seconds from dispatching INTERACTION_CREATE to the callback arriving, per interaction."""
        return [
            self.callback_at[it.token] - it.created_at for it in interactions if it.token in self.callback_at
        ]

    def refusals(self) -> tuple[str, bool]:
        """What real Discord would have refused during the run: bodies against the spec or its rules (400),
        routes outside the spec, and 401/403/429 answers (the invalid-request count). For `Report.add`."""
        statuses = Counter(r.status for r in self.invalid_requests)
        parts = [f"{len(self.invalid_bodies)} bad bodies", f"{len(self.unspecced_routes)} unknown routes"]
        parts += [f"{statuses[s]}×{s}" for s in (401, 403, 429) if statuses[s]]
        clean = not (self.invalid_bodies or self.unspecced_routes or statuses)
        return ", ".join(parts), clean

    def trim(self) -> None:
        """Forget recorded request bodies (keeps the harness' memory flat on long runs)."""
        self.requests.clear()
        self.gateway_payloads.clear()


# -------------------------------------------------------------------------------------------- the bot process


def open_fds(pid: int) -> tuple[int, int]:
    """(all fds, sockets) of a process."""
    total = sockets = 0
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{pid}/fd"):
            total += 1
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    sockets += 1
    return total, sockets


# -------------------------------------------------------------------------------------------- the world


@dataclass
class World:
    """Everything one benchmark run needs, started by `world()`."""

    fake: BenchFake
    hub: BenchHub
    hub_url: str
    key: str
    guild: FakeGuild
    channel: int
    members: list[FakeMember]
    database_url: str
    encryption_key: str
    workdir: Path
    bots: list[BotProcess] = field(default_factory=list)

    def bot(self, name: str = "bot", env: dict[str, str] | None = None) -> BotProcess:
        """The bot as a child process (`start(synced=True, timeout=60)` it), logging to `<name>.log`."""
        settings = {
            "DISCORD_TOKEN": self.fake.token,
            "ENCRYPTION_KEY": self.encryption_key,
            "DATABASE_URL": self.database_url,
            **hub_settings(self.hub_url),
            "LOG_LEVEL": "INFO",
            "METRICS_PORT": str(free_port()),
            "LOOP_LAG_SAMPLING": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        extra = os.environ.get("BENCH_EXTRA_PYTHONPATH")  # diagnosis only: e.g. a sitecustomize tweak
        proc = BotProcess(
            self.fake,
            settings,
            self.workdir / f"{name}.log",
            cwd=self.workdir,
            fast_identify=False,
            profile=os.environ.get("BENCH_PROFILE"),
            pythonpath=[extra] if extra else [],
        )
        self.bots.append(proc)
        return proc

    async def open_db(self) -> Database:
        return await Database.open(self.database_url, migrate=False)

    async def imagine(self, member: FakeMember, **options: Any) -> FakeInteraction:
        opts: dict[str, Any] = {"prompt": "a lighthouse at dusk, oil on canvas", **options}
        return await self.fake.slash(self.guild, self.channel, member, "imagine", opts)

    async def jobs(self) -> list[Any]:
        """Every job row (id, status, generation id, timestamps) read from the bot's database."""
        db = await self.open_db()
        try:
            async with db.session() as s:
                result = await s.execute(
                    select(
                        JobRow.id,
                        JobRow.status,
                        JobRow.hub_generation_id,
                        JobRow.created_at,
                        JobRow.submitted_at,
                        JobRow.posted_at,
                        JobRow.poll_attempts,
                    )
                )
                return list(result.all())
        finally:
            await db.close()


async def prepare_database(
    url: str,
    encryption_key: str,
    guild_id: int,
    key: str,
    *,
    per_member: int,
    per_guild: int,
    daily_credits: int | None,
) -> None:
    """Migrate, store the guild's hub key, raise its concurrency limits, give members a daily budget."""
    db = await Database.open(url)
    try:
        await KeyVault(db, MultiFernet([Fernet(encryption_key.encode())])).set_key(guild_id, key, 1)
        await GuildSettingsStore(db).update(
            guild_id, max_concurrent_per_member=per_member, max_concurrent_per_guild=per_guild
        )
        await QuotaService(db).policies.set_default(guild_id, daily_credits, "day")
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def world(
    name: str,
    *,
    members: int,
    duration: Callable[[GenerationRecord], float],
    per_member: int,
    per_guild: int = 10_000,
    daily_credits: int | None = 1_000_000,
    database_url: str | None = None,
    gate: asyncio.Event | None = None,
    after_gate: Callable[[GenerationRecord], float] | None = None,
    keep: bool = False,
) -> AsyncIterator[World]:
    """The emulator, the fake Discord with one guild of `members`, and a prepared database
    (SQLite, or a fresh PostgreSQL database with BENCH_DATABASE=postgres)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    hub = BenchHub(duration, gate=gate, after_gate=after_gate)
    fake = BenchFake()
    try:
        async with contextlib.AsyncExitStack() as stack:
            if database_url is None and os.environ.get("BENCH_DATABASE", "sqlite") == "postgres":
                database_url = await stack.enter_async_context(scratch_database("postgres"))
                if database_url is None:
                    raise RuntimeError(
                        "BENCH_DATABASE=postgres but no PostgreSQL (apt-get install postgresql)"
                    )
            hub_url, _ = await stack.enter_async_context(serving(hub))
            await fake.start()
            key = hub.add_key(credits=10**9)
            guild = fake.add_guild("Benchmark Guild")
            channel = guild.add_channel("images")
            people = [guild.add_member(f"member{i:04d}") for i in range(members)]
            encryption_key = Fernet.generate_key().decode()
            url = database_url or sqlite_url(workdir / "bench.db")
            await prepare_database(
                url,
                encryption_key,
                guild.id,
                key,
                per_member=per_member,
                per_guild=per_guild,
                daily_credits=daily_credits,
            )
            w = World(fake, hub, hub_url, key, guild, channel, people, url, encryption_key, workdir)
            # The harness's long-lived objects (Discord's spec above all) leave the collector's view: a
            # full collection of this process's heap took 120 ms mid-burst, holding every request the
            # fake and the emulator got meanwhile, a pause of the harness and not of the bot.
            gc.collect()
            gc.freeze()
            try:
                yield w
            finally:
                for bot in w.bots:
                    await bot.stop()
                await fake.close()
    finally:
        if not keep and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", file=sys.stderr)


async def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


# -------------------------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of a benchmark's table."""

    metric: str
    value: str
    target: str = ""
    ok: bool | None = None
    baseline: str = ""
    ratio: str = ""


@dataclass
class Report:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, metric: str, value: str, target: str = "", ok: bool | None = None, **kw: str) -> None:
        self.rows.append(Row(metric, value, target, ok, **kw))

    @property
    def passed(self) -> bool:
        return all(r.ok is not False for r in self.rows)

    def table(self) -> str:
        head = ["metric", "value", "target", "", "baseline", "ratio"]
        body = [
            [r.metric, r.value, r.target, {True: "ok", False: "MISS", None: ""}[r.ok], r.baseline, r.ratio]
            for r in self.rows
        ]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
        lines = [f"== {self.title} ({self.seconds:.0f} s)"]
        for line in [head, *body]:
            lines.append("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=False)).rstrip())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "seconds": self.seconds,
            "passed": self.passed,
            "rows": [r.__dict__ for r in self.rows],
            "details": self.details,
        }


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def secs(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.2f} s"


def ratio(ours: float, baseline: float) -> str:
    if not baseline or math.isnan(ours) or math.isnan(baseline):
        return "n/a"
    return f"{ours / baseline:.2f}x"


def cli(
    name: str,
    run: Callable[[argparse.Namespace], Any],
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Entry point for `python -m benchmarks.<name>`: run, print the table, optionally save JSON."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    if configure is not None:
        configure(parser)
    args = parser.parse_args()
    started = time.monotonic()
    report: Report = asyncio.run(run(args))
    report.seconds = time.monotonic() - started
    print(report.table())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2, default=str))
    sys.exit(0 if report.passed else 1)


async def run_baseline(
    *argv: str, timeout: float = 300.0, feed: Callable[[asyncio.StreamWriter], Awaitable[None]] | None = None
) -> tuple[dict[str, Any], int]:
    """Run `python -m benchmarks.naive ...`; its JSON result and its pid. `feed` writes its stdin
    (e.g. interactions as they are created), which is closed after."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.naive",
        *argv,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE if feed is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if feed is not None:
        assert proc.stdin is not None
        await feed(proc.stdin)
        proc.stdin.close()
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"baseline {argv[0]} failed: {err.decode(errors='replace')[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]), proc.pid
