"""`bot.health`: /metrics and /healthz over real HTTP on 127.0.0.1, and the --check CLI."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

import bot.metrics
from bot.health import Check, HealthServer

ROOT = Path(__file__).resolve().parents[1]


async def passing() -> bool:
    return True


async def returns_false() -> bool:
    return False


async def raises() -> bool:
    raise RuntimeError("database is down: postgresql://user:secret@db/x")


async def hangs() -> bool:
    await asyncio.Event().wait()
    return True


@asynccontextmanager
async def running(checks: Mapping[str, Check], *, check_timeout: float = 2.0) -> AsyncIterator[HealthServer]:
    server = HealthServer(0, host="127.0.0.1", checks=checks, check_timeout=check_timeout)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def get(server: HealthServer, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def healthz(server: HealthServer) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}/healthz") as response,
    ):
        return response.status, await response.json()


def metric_names() -> dict[str, MetricWrapperBase]:
    """Every metric bot/metrics.py defines, by its exposition name (counters without _total)."""
    found: dict[str, MetricWrapperBase] = {}
    for value in vars(bot.metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                found[family.name] = value
    return found


async def test_metrics_serves_every_imagehub_metric() -> None:
    names = metric_names()
    assert names and all(name.startswith("imagehub_") for name in names)
    labels = {"command": "health-test", "outcome": "ok"}
    before = REGISTRY.get_sample_value("imagehub_commands_total", labels) or 0.0
    bot.metrics.COMMANDS.labels(**labels).inc()

    async with running({}) as server:
        status, content_type, body = await get(server, "/metrics")

    assert status == 200
    assert content_type == CONTENT_TYPE_LATEST
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert set(names) <= set(families), set(names) - set(families)
    samples = [s for s in families["imagehub_commands"].samples if s.name == "imagehub_commands_total"]
    values = {tuple(sorted(s.labels.items())): s.value for s in samples}
    assert values[tuple(sorted(labels.items()))] == before + 1


async def test_healthz_ok_when_every_check_passes() -> None:
    async with running({"database": passing, "scheduler": passing}) as server:
        status, body = await healthz(server)
    assert status == 200
    assert body == {"ok": True, "checks": {"database": True, "scheduler": True}, "failed": {}}


async def test_healthz_ok_without_checks() -> None:
    async with running({}) as server:
        status, body = await healthz(server)
    assert status == 200
    assert body["ok"] is True


async def test_healthz_503_names_the_failing_check() -> None:
    async with running({"database": passing, "hub": returns_false}) as server:
        status, body = await healthz(server)
    assert status == 503
    assert body == {
        "ok": False,
        "checks": {"database": True, "hub": False},
        "failed": {"hub": "returned false"},
    }


async def test_raising_check_fails_without_leaking_its_message() -> None:
    async with running({"database": raises, "scheduler": passing}) as server:
        status, body = await healthz(server)
    assert status == 503
    assert body["checks"] == {"database": False, "scheduler": True}
    assert body["failed"] == {"database": "RuntimeError"}
    assert "secret" not in str(body)


async def test_hanging_check_fails_within_the_timeout() -> None:
    timeout = 0.3
    async with running({"stuck": hangs, "database": passing}, check_timeout=timeout) as server:
        started = time.monotonic()
        status, body = await healthz(server)
        elapsed = time.monotonic() - started
        # The server still answers afterwards: the abandoned check did not wedge it.
        again, _ = await healthz(server)
    assert status == 503 and again == 503
    assert body["failed"] == {"stuck": "timed out"}
    assert body["checks"] == {"stuck": False, "database": True}
    assert timeout <= elapsed < timeout + 2.0


async def test_server_reports_its_bound_port_and_stops() -> None:
    server = HealthServer(0, host="127.0.0.1")
    with pytest.raises(RuntimeError):
        _ = server.port
    await server.start()
    port = server.port
    assert port > 0
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/healthz")


async def run_check_cli(*args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "METRICS_PORT"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.health",
        "--check",
        *args,
        cwd=str(ROOT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, output.decode()


async def test_check_cli_exit_codes() -> None:
    async with running({"database": passing}) as healthy, running({"database": returns_false}) as sick:
        ok_code, _ = await run_check_cli("--url", f"http://127.0.0.1:{healthy.port}/healthz")
        sick_code, sick_out = await run_check_cli("--url", f"http://127.0.0.1:{sick.port}/healthz")
        stopped_port = sick.port
    down_code, _ = await run_check_cli("--url", f"http://127.0.0.1:{stopped_port}/healthz", "--timeout", "2")
    assert ok_code == 0
    assert sick_code == 1 and "unhealthy" in sick_out
    assert down_code == 1


async def test_check_cli_uses_metrics_port_by_default() -> None:
    async with running({"database": passing}) as server:
        env = dict(os.environ, METRICS_PORT=str(server.port))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.health", "--check", cwd=str(ROOT), env=env
        )
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
