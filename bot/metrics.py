"""Prometheus metrics, defined once here and updated where things happen."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter("imagehub_commands_total", "Application commands handled", ["command", "outcome"])
GENERATIONS = Counter("imagehub_generations_total", "Generations that reached a final state", ["status"])
CREDITS_SPENT = Counter("imagehub_credits_spent_total", "Hub credits charged for members' generations")
HUB_LATENCY = Histogram(
    "imagehub_hub_request_seconds",
    "Latency of hub API calls",
    ["call"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
POLLS = Counter("imagehub_polls_total", "Generation status polls sent to the hub")
QUEUE_DEPTH = Gauge("imagehub_queue_depth", "Jobs claimed and being worked by this process")
DB_COMMITS = Counter("imagehub_db_commits_total", "Write transactions committed (a group counts once)")
DB_WRITES = Counter("imagehub_db_writes_total", "Writes committed (each caller's work, grouped or not)")
DISCORD_ERRORS = Counter("imagehub_discord_errors_total", "Discord API errors while publishing", ["kind"])
LOOP_LAG = Histogram(
    "imagehub_event_loop_lag_seconds",
    "How late the event loop ran a timer (sampled when LOOP_LAG_SAMPLING=1)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


async def sample_loop_lag(interval: float = 0.05) -> None:
    """Forever: sleep `interval` and record how much later than asked the loop woke us."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        LOOP_LAG.observe(max(0.0, loop.time() - started - interval))
