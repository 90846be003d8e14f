"""Discord's rate limits, as the fake enforces them (topics/rate-limits).

- **Per-route buckets**: each request falls in one bucket (a :class:`RouteLimit`), counted per top-level
  resource of its path (``channel_id``, ``guild_id``, ``webhook_id + webhook_token``, or the interaction).
  Every API answer carries ``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket``; past the limit the
  answer is 429 with ``retry_after``, ``global: false`` and ``X-RateLimit-Scope: user``.
- **Global**: at most ``global_per_second`` requests per second over all routes, except the interaction
  endpoints (callbacks, and followups/original-response edits with an interaction token); past it, 429 with
  ``global: true`` and ``X-RateLimit-Global``.
- **Invalid requests**: every 401, 403 and 429 answer (a 429 of scope ``shared`` excepted) counts; past
  ``invalid_limit`` within ``invalid_window`` seconds the bot is shut out (Cloudflare's ban: 429 without
  JSON or ``Via`` header, which discord.py raises at once) until the window has room again.

The defaults are Discord's documented or commonly observed values. Tests and benchmarks change them through
``fake.rate_limits`` (a :class:`RateLimits`), never by bypassing them.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class RouteLimit:
    """A bucket: ``limit`` requests per ``per`` seconds for ``method`` on the spec's path ``template``
    (``None``: any), counted separately for each value of the path parameters in ``per_resource``."""

    name: str
    method: str | None
    template: str | None
    limit: int
    per: float
    per_resource: tuple[str, ...] = ()

    def matches(self, method: str, template: str | None) -> bool:
        return (self.method is None or self.method == method) and (
            self.template is None or self.template == template
        )


_WEBHOOK = "/webhooks/{webhook_id}/{webhook_token}"
_TOKEN = ("webhook_id", "webhook_token")


def default_routes() -> list[RouteLimit]:
    return [
        # Create Message: 5 per 5 s per channel (Discord's long-standing message bucket).
        RouteLimit("message-create", "POST", "/channels/{channel_id}/messages", 5, 5.0, ("channel_id",)),
        RouteLimit(
            "message-edit", "PATCH", "/channels/{channel_id}/messages/{message_id}", 5, 5.0, ("channel_id",)
        ),
        RouteLimit(
            "message-delete",
            "DELETE",
            "/channels/{channel_id}/messages/{message_id}",
            5,
            1.0,
            ("channel_id",),
        ),
        RouteLimit("history", "GET", "/channels/{channel_id}/messages", 5, 1.0, ("channel_id",)),
        # Webhook (and interaction token) routes are bucketed per webhook id + token.
        RouteLimit("webhook-execute", "POST", _WEBHOOK, 5, 2.0, _TOKEN),
        RouteLimit("webhook-message", None, _WEBHOOK + "/messages/@original", 5, 2.0, _TOKEN),
        RouteLimit("webhook-message", None, _WEBHOOK + "/messages/{message_id}", 5, 2.0, _TOKEN),
        RouteLimit(
            "interaction-callback",
            "POST",
            "/interactions/{interaction_id}/{interaction_token}/callback",
            5,
            5.0,
            ("interaction_id",),
        ),
        RouteLimit("commands-overwrite", "PUT", "/applications/{application_id}/commands", 10, 20.0),
        RouteLimit(
            "commands-overwrite",
            "PUT",
            "/applications/{application_id}/guilds/{guild_id}/commands",
            10,
            20.0,
            ("guild_id",),
        ),
    ]


@dataclass
class RateLimits:
    """The fake's rate-limit settings (``fake.rate_limits``); change them before or during a test."""

    routes: list[RouteLimit] = field(default_factory=default_routes)
    #: any route without a bucket above: this many per second per route and resource
    default_limit: int = 50
    default_per: float = 1.0
    global_per_second: int = 50
    invalid_limit: int = 10_000
    invalid_window: float = 600.0

    def route_for(self, method: str, template: str | None) -> RouteLimit:
        for rule in self.routes:
            if rule.matches(method, template):
                return rule
        return RouteLimit("default", None, template, self.default_limit, self.default_per, ("*",))


@dataclass
class _Window:
    start: float
    count: int = 0


@dataclass
class Verdict:
    """What the limiter decided for one request: headers for the answer, and a 429 body when refused."""

    headers: dict[str, str]
    refused: dict[str, object] | None = None
    is_global: bool = False


def _hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:16]


class RateLimiter:
    """Bucket state for one fake (monotonic clock)."""

    def __init__(self, settings: RateLimits) -> None:
        self.settings = settings
        self._buckets: dict[tuple[str, tuple[str, ...]], _Window] = {}
        self._global: deque[float] = deque()
        self.invalid: deque[float] = deque()  # times of 401/403/429 answers
        self.refusals = 0

    def check(
        self, method: str, template: str | None, params: dict[str, str], exempt_global: bool
    ) -> Verdict:
        now = time.monotonic()
        rule = self.settings.route_for(method, template)
        resource = (
            tuple(params.get(p, "") for p in rule.per_resource)
            if rule.per_resource != ("*",)
            else (
                template or "",
                *sorted(params.values()),
            )
        )
        key = (rule.name, resource)
        window = self._buckets.get(key)
        if window is None or now >= window.start + rule.per:
            window = self._buckets[key] = _Window(now)
        reset_after = max(0.0, window.start + rule.per - now)
        headers = {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": _hash(rule.name),
        }
        if not exempt_global:
            while self._global and self._global[0] <= now - 1.0:
                self._global.popleft()
            if len(self._global) >= self.settings.global_per_second:
                retry = max(0.001, self._global[0] + 1.0 - now)
                headers["X-RateLimit-Remaining"] = str(max(0, rule.limit - window.count))
                headers.update(_refusal_headers(retry, "global"))
                headers["X-RateLimit-Global"] = "true"
                self.refusals += 1
                body = {
                    "message": "You are being rate limited.",
                    "retry_after": round(retry, 3),
                    "global": True,
                }
                return Verdict(headers, body, is_global=True)
        if window.count >= rule.limit:
            headers["X-RateLimit-Remaining"] = "0"
            headers.update(_refusal_headers(reset_after, "user"))
            self.refusals += 1
            body = {
                "message": "You are being rate limited.",
                "retry_after": round(reset_after, 3),
                "global": False,
            }
            return Verdict(headers, body)
        window.count += 1
        if not exempt_global:
            self._global.append(now)
        headers["X-RateLimit-Remaining"] = str(rule.limit - window.count)
        return Verdict(headers)

    def count_invalid(self, status: int, scope: str | None) -> None:
        if status in (401, 403) or (status == 429 and scope != "shared"):
            self.invalid.append(time.monotonic())

    def invalid_in_window(self) -> int:
        now = time.monotonic()
        while self.invalid and self.invalid[0] <= now - self.settings.invalid_window:
            self.invalid.popleft()
        return len(self.invalid)

    def banned_for(self) -> float | None:
        """Seconds left of the ban, or None when not banned."""
        if self.invalid_in_window() < self.settings.invalid_limit:
            return None
        return max(0.0, self.invalid[0] + self.settings.invalid_window - time.monotonic())


def _refusal_headers(retry_after: float, scope: str) -> dict[str, str]:
    return {
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Scope": scope,
        "Via": "1.1 google",
    }
