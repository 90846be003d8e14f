"""The shared state of the fake: identity, the world (users, guilds, channels), gateway sessions,
interactions, the recordings tests assert on, the rules' settings, and waiting for any of it to change.

:class:`~.server.FakeDiscord` extends it, so tests read and set these as ``fake.requests``,
``fake.cdn_url_lifetime``…; every resource of the fake (:mod:`.commands`, :mod:`.messages`, …) holds it.
Underscored attributes are the fake's own: tests and harnesses use the public ones and the hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .models import DefaultSetup, FakeChannel, FakeGuild, FakeUser, SnowflakeGenerator
from .ratelimits import RateLimits
from .rest import InvalidBody, RecordedRequest

if TYPE_CHECKING:
    from .commands import CommandSync
    from .gateway import GatewayConnection, GatewaySession
    from .interactions import FakeInteraction

T = TypeVar("T")


class FakeState:
    """What more than one part of the fake reads or writes; see the module doc."""

    def __init__(
        self,
        *,
        bot_name: str,
        token: str | None,
        recommended_shards: int,
        interaction_deadline: float,
        interaction_ttl: float,
        heartbeat_interval_ms: int,
        heartbeat_ack_delay: float,
        strict_commands: bool,
        echo_message_events: bool,
    ) -> None:
        self._ids = SnowflakeGenerator()
        self.application_id: int = self._ids.next()
        self.bot_user = FakeUser(self.application_id, bot_name, bot=True)
        self.app_owner = FakeUser(self._ids.next(), "app-owner")
        self.token: str = token or f"fake.{secrets.token_urlsafe(24)}"
        self.recommended_shards = recommended_shards
        #: a first callback later than this (seconds after dispatch) is refused with 10062 Unknown interaction
        self.interaction_deadline = interaction_deadline
        self.interaction_ttl = interaction_ttl
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.heartbeat_ack_delay = heartbeat_ack_delay
        #: rate limits (per-route buckets, global 50/s, invalid-request ban): tests change its fields
        self.rate_limits = RateLimits()
        #: every answer with status 401, 403 or 429 (what Discord counts toward the invalid-request limit)
        self.invalid_requests: list[RecordedRequest] = []
        #: signed attachment URLs (``ex``/``is``/``hm``) stop working this many seconds after they were issued
        self.cdn_url_lifetime = 24 * 3600.0
        #: ``nonce`` + ``enforce_nonce`` dedupes posts by the same author within this many seconds
        self.nonce_window = 300.0
        #: refuse to send a command interaction for a command the bot has not registered
        self.strict_commands = strict_commands
        #: the application's installation contexts (Developer Portal → Installation): 0 server, 1 user.
        #: A command sync declaring `integration_types` outside them is refused.
        self.app_integration_types: set[int] = {0, 1}
        #: dispatch MESSAGE_CREATE/UPDATE/DELETE for stored messages (as Discord does) when intents allow
        self.echo_message_events = echo_message_events

        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user, self.app_owner.id: self.app_owner}
        self.guilds: dict[int, FakeGuild] = {}
        self._channel_index: dict[int, FakeChannel] = {}
        self.command_syncs: list[CommandSync] = []

        self.requests: list[RecordedRequest] = []
        #: requests to routes the fake does not implement (404 ``{"message": "404: Not Found", "code": 0}``)
        self.unknown_routes: list[RecordedRequest] = []
        #: exceptions raised inside the fake's handlers (a bug in the fake; answered 503)
        self.internal_errors: list[BaseException] = []
        #: API requests to a path the official OpenAPI spec does not know (a test that makes one fails)
        self.unspecced_routes: list[RecordedRequest] = []
        #: bodies refused as malformed: against the spec's request schema, or by the fake's rules (a test that
        #: sends one fails at teardown, whatever the bot did with the 400)
        self.invalid_bodies: list[InvalidBody] = []
        #: CPU seconds the validation worker spent per checked body (the fake's event loop spends none)
        self.spec_check_seconds: list[float] = []
        #: called with each finished request (status and parsed response set): for harnesses that time things
        self.observers: list[Callable[[RecordedRequest], None]] = []

        self.sessions: list[GatewaySession] = []
        self._sessions_by_id: dict[str, GatewaySession] = {}
        self._sessions_by_shard: dict[int, GatewaySession] = {}
        self._shard_count: int | None = None
        self._connections: set[GatewayConnection] = set()
        self.gateway_payloads: list[dict[str, Any]] = []  # every payload the clients sent on the gateway

        self.interactions: list[FakeInteraction] = []
        self._interactions_by_token: dict[str, FakeInteraction] = {}

        self.default: DefaultSetup | None = None
        self._changed = asyncio.Event()
        self._port = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway/"

    def channel(self, channel_id: int) -> FakeChannel:
        return self._channel_index[channel_id]

    def guild(self, guild_id: int | FakeGuild) -> FakeGuild:
        return guild_id if isinstance(guild_id, FakeGuild) else self.guilds[guild_id]

    @property
    def identify_count(self) -> int:
        return len(self.sessions)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------------------------------------
    # waiting
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[], T | None] | Callable[[list[RecordedRequest]], T | None],
        timeout: float = 5.0,
        *,
        what: str | None = None,
    ) -> T:
        """Wait until ``predicate`` returns a truthy value, and return that value. It is re-evaluated whenever
        the fake records anything (request, gateway payload, message change); it takes no argument or one
        (then it gets ``fake.requests``). Raises ``TimeoutError`` with a summary of the recent traffic."""
        try:
            n_args = len(inspect.signature(predicate).parameters)
        except (TypeError, ValueError):
            n_args = 0
        call: Callable[[], T | None] = (
            (lambda: predicate(self.requests)) if n_args == 1 else predicate  # type: ignore[call-arg,assignment]
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            result = call()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {what or predicate!r}\n{self.summary()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def wait_request(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        *,
        timeout: float = 5.0,
        after: int = 0,
    ) -> RecordedRequest:
        """Wait for a recorded request (``after``: index into ``fake.requests`` to start from)."""

        def check() -> RecordedRequest | None:
            for rec in self.requests[after:]:
                if method is not None and rec.method != method.upper():
                    continue
                if path_contains is not None and path_contains not in rec.path:
                    continue
                if predicate is not None and not predicate(rec):
                    continue
                if rec.status == 0:
                    continue  # still being handled
                return rec
            return None

        return await self.wait_for(check, timeout, what=f"request {method or '*'} *{path_contains or ''}*")

    def summary(self, last: int = 15) -> str:
        lines = [f"  {r.status} {r.route}{' (fault)' if r.faulted else ''}" for r in self.requests[-last:]]
        out = "recent requests:\n" + ("\n".join(lines) or "  (none)")
        if self.unknown_routes:
            out += "\nunknown routes: " + ", ".join(r.route for r in self.unknown_routes)
        if self.internal_errors:
            out += f"\ninternal errors: {self.internal_errors!r}"
        if self.unspecced_routes:
            out += "\nroutes not in Discord's spec: " + ", ".join(r.route for r in self.unspecced_routes)
        if self.invalid_bodies:
            out += "\ninvalid bodies: " + "; ".join(str(b) for b in self.invalid_bodies)
        sess = ", ".join(
            f"shard {s.shard_id}/{s.shard_count} {'ready' if s.ready else 'not ready'}"
            f"{' connected' if s.connected else ' disconnected'}"
            for s in self._sessions_by_shard.values()
        )
        return out + "\ngateway sessions: " + (sess or "none")
