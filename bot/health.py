"""Operator endpoints: Prometheus `/metrics` and a `/healthz` that runs named checks.

    server = HealthServer(9108, checks={"database": db_ok, "scheduler": scheduler_ok})
    await server.start()      # server.port is the bound port (useful with port 0)
    ...
    await server.stop()

`GET /healthz` answers 200 `{"ok": true, "checks": {"database": true, ...}, "failed": {}}` when
every check returns True, else 503 with `"ok": false` and `"failed"` naming each failed check and
why (`"returned false"`, `"timed out"` or the exception's type — never its message, which could
hold a secret). Checks run concurrently, each bounded by `check_timeout`.

`python -m bot.health --check [--url URL]` exits 0 when /healthz answers 200 and 1 otherwise; the
Docker HEALTHCHECK uses it (stdlib only on the client side, proxies ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from bot.logs import kv

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]

DEFAULT_PORT = 9108
CHECK_TIMEOUT = 2.0


class HealthServer:
    """An aiohttp server for `/metrics` and `/healthz`; see the module docstring."""

    def __init__(
        self,
        port: int,
        host: str = "0.0.0.0",
        checks: Mapping[str, Check] | None = None,
        *,
        check_timeout: float = CHECK_TIMEOUT,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.checks: dict[str, Check] = dict(checks or {})
        self.check_timeout = check_timeout
        self.registry = registry
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        # Checks that outlived their timeout: cancelled, referenced until they finish.
        self._abandoned: set[asyncio.Task[bool]] = set()

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._port is None:
            raise RuntimeError("HealthServer is not started")
        return self._port

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("HealthServer is already started")
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info(kv("health.listening", host=self.host, port=self._port))

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def run_checks(self) -> tuple[dict[str, bool], dict[str, str]]:
        """Run every check concurrently: (name → passed, name → why it failed)."""
        if not self.checks:
            return {}, {}
        tasks = {
            name: asyncio.create_task(_call(check), name=f"health:{name}")
            for name, check in self.checks.items()
        }
        await asyncio.wait(tasks.values(), timeout=self.check_timeout)
        passed: dict[str, bool] = {}
        failed: dict[str, str] = {}
        for name, task in tasks.items():
            reason = self._outcome(task)
            passed[name] = reason is None
            if reason is not None:
                failed[name] = reason
        if failed:
            log.warning(kv("health.failed", **failed))
        return passed, failed

    def _outcome(self, task: asyncio.Task[bool]) -> str | None:
        if not task.done():
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
            return "timed out"
        if task.cancelled():
            return "cancelled"
        exc = task.exception()
        if exc is not None:
            return type(exc).__name__
        return None if task.result() is True else "returned false"

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        passed, failed = await self.run_checks()
        ok = not failed
        return web.json_response({"ok": ok, "checks": passed, "failed": failed}, status=200 if ok else 503)


async def _call(check: Check) -> bool:
    return await check()


def default_url() -> str:
    port = os.environ.get("METRICS_PORT", "").strip() or str(DEFAULT_PORT)
    return f"http://127.0.0.1:{port}/healthz"


def check_url(url: str, timeout: float = 5.0) -> bool:
    """True when `url` answers 200 (any error, other status or timeout is False)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.health", description="probe the bot's /healthz")
    parser.add_argument("--check", action="store_true", help="exit 0 when /healthz answers 200, else 1")
    parser.add_argument("--url", default=None, help="default: http://127.0.0.1:${METRICS_PORT:-9108}/healthz")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    if not args.check:
        parser.error("nothing to do: pass --check")
    url = args.url or default_url()
    ok = check_url(url, timeout=args.timeout)
    if not ok:
        print(f"unhealthy: {url}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
