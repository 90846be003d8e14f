"""Injected HTTP failures: ``fake.fail_next(n, status, route_contains=...)`` answers the next matching
requests with a 429 (shaped as Discord's, so discord.py retries) or a 5xx, before any other rule or handler
runs; ``fake.hold_next(n, route_contains=..., until=event)`` holds the next matching requests (a slow
upload) until the test sets ``event``, then lets them through.
(Other faults belong to their resource: ``delete_channel``/``deny_send`` in :mod:`.channels`,
``expire_interaction`` in :mod:`.interactions`, ``drop_shard`` and the other gateway controls in
:mod:`.gateway`.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .rest import RecordedRequest, json_response


@dataclass(eq=False)
class FaultRule:
    remaining: int
    status: int
    route_contains: str | None
    method: str | None
    retry_after: float
    is_global: bool
    body: dict[str, Any] | None
    hits: int = 0

    def matches(self, rec: RecordedRequest) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and rec.method != self.method.upper():
            return False
        return (
            self.route_contains is None
            or self.route_contains in rec.path
            or self.route_contains in rec.raw_path
        )


@dataclass(eq=False)
class HoldRule:
    remaining: int
    route_contains: str | None
    method: str | None
    with_files: bool
    until: asyncio.Event
    held: int = 0  # requests waiting now
    released: int = 0

    def matches(self, rec: RecordedRequest) -> bool:
        if self.remaining <= 0 or (self.with_files and not rec.files):
            return False
        if self.method is not None and rec.method != self.method.upper():
            return False
        return self.route_contains is None or self.route_contains in rec.path


class Faults:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.holds: list[HoldRule] = []
        self.notify: Callable[[], None] = lambda: None

    def hold_next(
        self,
        n: int = 1,
        route_contains: str | None = None,
        *,
        until: asyncio.Event,
        method: str | None = None,
        with_files: bool = False,
    ) -> HoldRule:
        """Hold the next ``n`` matching requests (``with_files``: only those uploading files) once their
        bodies arrived, as a slow upload would, until ``until`` is set; ``rule.held`` counts those
        waiting (``fake.wait_for`` sees it change)."""
        rule = HoldRule(n, route_contains, method, with_files, until)
        self.holds.append(rule)
        return rule

    async def hold_for(self, rec: RecordedRequest) -> None:
        rule = next((h for h in self.holds if h.matches(rec)), None)
        if rule is None:
            return
        rule.remaining -= 1
        rule.held += 1
        self.notify()
        try:
            await rule.until.wait()
        finally:
            rule.held -= 1
            rule.released += 1
            self.notify()

    def fail_next(
        self,
        n: int = 1,
        status: int = 429,
        route_contains: str | None = None,
        *,
        method: str | None = None,
        retry_after: float = 0.05,
        is_global: bool = False,
        body: dict[str, Any] | None = None,
    ) -> FaultRule:
        """Answer the next ``n`` matching requests with ``status`` (429 with ``retry_after`` JSON, ``Via`` and
        ``X-RateLimit-*``/``Retry-After`` headers, as discord.py expects; 5xx with a JSON error). discord.py
        retries 429 after ``retry_after`` and 500/502/504 after 1 s, 3 s, …; 503 raises at once."""
        rule = FaultRule(n, status, route_contains, method, retry_after, is_global, body)
        self.rules.append(rule)
        return rule

    def fault_for(self, rec: RecordedRequest) -> web.Response | None:
        rule = next((f for f in self.rules if f.matches(rec)), None)
        if rule is None:
            return None
        rule.remaining -= 1
        rule.hits += 1
        rec.faulted = True
        if rule.status == 429:
            ra = rule.retry_after
            body = rule.body or {
                "message": "You are being rate limited.",
                "retry_after": ra,
                "global": rule.is_global,
            }
            headers = {
                "Retry-After": f"{ra:g}",
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + ra:.3f}",
                "X-RateLimit-Reset-After": f"{ra:.3f}",
                "X-RateLimit-Bucket": "fakebucket" + str(abs(hash(rule.route_contains)) % 10**8),
                "X-RateLimit-Scope": "global" if rule.is_global else "user",
                "Via": "1.1 google",
            }
            if rule.is_global:
                headers["X-RateLimit-Global"] = "true"
            return json_response(body, status=429, headers=headers)
        messages = {
            500: "500: Internal Server Error",
            502: "502: Bad Gateway",
            503: "503: Service Unavailable",
            504: "504: Gateway Timeout",
        }
        body = rule.body or {"message": messages.get(rule.status, f"{rule.status}: Error"), "code": 0}
        return json_response(body, status=rule.status)
