"""The fake Discord server: REST (``/api/v10``), gateway (``/gateway``), attachment downloads, test API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import json
import math
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from . import install as _install
from . import validation
from .gateway import (
    OP_HEARTBEAT,
    OP_HEARTBEAT_ACK,
    OP_HELLO,
    OP_IDENTIFY,
    OP_INVALID_SESSION,
    OP_PRESENCE,
    OP_RECONNECT,
    OP_REQUEST_MEMBERS,
    OP_RESUME,
    OP_VOICE,
    GatewayConnection,
    GatewaySession,
)
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    CB_AUTOCOMPLETE,
    CB_DEFERRED_MESSAGE,
    CB_DEFERRED_UPDATE,
    CB_MESSAGE,
    CB_MODAL,
    CB_UPDATE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    OPT_ATTACHMENT,
    FakeCallback,
    FakeInteraction,
    OptionBuilder,
    leaf_definitions,
    modal_submit_components,
    nest_options,
)
from .models import (
    ADMINISTRATOR,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MODERATE_MEMBERS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    UPLOAD_LIMIT_BY_TIER,
    VIEW_CHANNEL,
    DefaultSetup,
    FakeAttachment,
    FakeChannel,
    FakeEdit,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    SnowflakeGenerator,
    _perm_value,
    now_iso,
    snowflake_time,
)
from .models import ATTACH_FILES as _ATTACH_FILES
from .models import EMBED_LINKS as _EMBED_LINKS
from .openapi import ValidatorPool, route_index
from .ratelimits import RateLimiter, RateLimits

T = TypeVar("T")
JSON = "application/json"
MAX_REQUEST_BYTES = 25 * 1024 * 1024  # "The maximum request size when sending a message is 25 MiB"
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12


@dataclass(eq=False)
class RecordedFile:
    """A ``files[n]`` multipart part as received."""

    name: str  # the multipart field name, "files[n]"
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def index(self) -> int:
        m = re.fullmatch(r"files\[(\d+)\]|file(\d*)", self.name)
        if not m:
            return -1
        return int(m.group(1) or m.group(2) or 0)


@dataclass(eq=False)
class RecordedRequest:
    """One HTTP request the fake received. ``path`` is relative to ``/api/v10`` for API calls."""

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str] = field(repr=False)
    json: Any = field(repr=False)
    files: list[RecordedFile] = field(default_factory=list, repr=False)
    multipart: bool = False
    status: int = 0
    response: Any = field(default=None, repr=False)
    faulted: bool = False
    #: event-loop time the request arrived (before any rate limit, validation or handling)
    received_at: float = 0.0

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(eq=False)
class InvalidBody:
    """A request Discord would refuse as malformed (HTTP 400 50035/50006): by the official spec's schema
    (``source="spec"``) or by a documented rule the schema can't express (``source="rules"``)."""

    request: RecordedRequest
    source: str
    error: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.request.route} ({self.source}): {json.dumps(self.error.get('errors') or self.error)}"


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
class CommandSync:
    """One bulk overwrite (``PUT``) of application commands: the payload as sent and what the fake stored."""

    guild_id: int | None
    payload: list[dict[str, Any]] = field(repr=False)
    commands: list[dict[str, Any]] = field(repr=False)


class HTTPError(Exception):
    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code, **extra}


def _json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # discord.py parses JSON only when Content-Type is exactly application/json (no charset)
    h = {"Content-Type": JSON}
    if headers:
        h.update(headers)
    return web.Response(body=json.dumps(data).encode(), status=status, headers=h)


def _error_response(status: int, code: int, message: str, **extra: Any) -> web.Response:
    return _json_response({"message": message, "code": code, **extra}, status=status)


def _invalid_response_type() -> HTTPError:
    """Discord's answer to a callback type that does not fit the interaction."""
    error = {"code": "INTERACTION_RESPONSE_TYPE_INVALID", "message": "Invalid interaction response type"}
    return HTTPError(400, 50035, "Invalid Form Body", errors={"type": {"_errors": [error]}})


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


Handler = Callable[[RecordedRequest, "re.Match[str]"], Awaitable[web.StreamResponse]]


class FakeDiscord:
    """A local fake Discord (REST + gateway + CDN) for the real discord.py client; see the package doc."""

    def __init__(
        self,
        *,
        bot_name: str = "Image Hub",
        token: str | None = None,
        recommended_shards: int = 1,
        interaction_deadline: float = 3.0,
        interaction_ttl: float = 15 * 60.0,
        heartbeat_interval_ms: int = 41250,
        heartbeat_ack_delay: float = 0.03,
        strict_commands: bool = True,
        echo_message_events: bool = True,
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
        self._limiter = RateLimiter(self.rate_limits)
        #: every answer with status 401, 403 or 429 (what Discord counts toward the invalid-request limit)
        self.invalid_requests: list[RecordedRequest] = []
        #: signed attachment URLs (``ex``/``is``/``hm``) stop working this many seconds after they were issued
        self.cdn_url_lifetime = 24 * 3600.0
        self._cdn_secret = secrets.token_bytes(16)
        self._cdn_epoch = 0
        #: ``nonce`` + ``enforce_nonce`` dedupes posts by the same author within this many seconds
        self.nonce_window = 300.0
        self._nonces: dict[tuple[int, int, str], tuple[float, FakeMessage]] = {}
        #: refuse to send a command interaction for a command the bot has not registered
        self.strict_commands = strict_commands
        #: dispatch MESSAGE_CREATE/UPDATE/DELETE for stored messages (as Discord does) when intents allow
        self.echo_message_events = echo_message_events

        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user, self.app_owner.id: self.app_owner}
        self.guilds: dict[int, FakeGuild] = {}
        self._channel_index: dict[int, FakeChannel] = {}
        self._deleted_channels: set[int] = set()
        self._denied_channels: set[int] = set()
        self._messages: dict[int, FakeMessage] = {}
        self._channel_messages: dict[int, list[FakeMessage]] = {}
        self._attachments: dict[int, FakeAttachment] = {}
        self._commands: dict[int | None, dict[tuple[str, int], dict[str, Any]]] = {}
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
        self._faults: list[FaultRule] = []

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
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._installed: tuple[Any, Any, Any] | None = None
        self._site_dir: Path | None = None
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._build_routes()

    # ------------------------------------------------------------------------------------------------------
    # lifecycle
    async def start(self) -> FakeDiscord:
        await ValidatorPool.warm()
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self.uninstall()
        for conn in list(self._connections):
            await conn.close(1001)
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._site_dir is not None:
            shutil.rmtree(self._site_dir, ignore_errors=True)
            self._site_dir = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway/"

    # ------------------------------------------------------------------------------------------------------
    # pointing discord.py at the fake
    def install(self, *, fast_identify: bool = False) -> None:
        """Point discord.py in this process at the fake (``Route.BASE``, ``DEFAULT_GATEWAY``).

        ``fast_identify=True`` also replaces ``Client.before_identify_hook`` (which sleeps 5 s before every
        non-first IDENTIFY) with a no-op, for multi-shard or re-identify tests."""
        import discord.client
        import discord.gateway
        import discord.http
        import yarl

        if self._installed is None:
            self._installed = (
                discord.http.Route.BASE,
                discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
                discord.client.Client.__dict__.get("before_identify_hook"),
            )
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        if fast_identify:

            async def before_identify_hook(self: Any, shard_id: int | None, *, initial: bool = False) -> None:
                return None

            discord.client.Client.before_identify_hook = before_identify_hook  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._installed is None:
            return
        import discord.client
        import discord.gateway
        import discord.http

        base, gateway, hook = self._installed
        discord.http.Route.BASE = base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
        if hook is not None:
            discord.client.Client.before_identify_hook = hook  # type: ignore[method-assign]
        self._installed = None

    def subprocess_env(
        self, base: Mapping[str, str] | None = None, *, fast_identify: bool = False
    ) -> dict[str, str]:
        """Environment for a child process (e.g. ``python -m bot``): ``base`` (default ``os.environ``) plus a
        ``PYTHONPATH`` entry holding a generated ``sitecustomize.py`` that patches discord.py on import."""
        if self._site_dir is None:
            self._site_dir = Path(tempfile.mkdtemp(prefix="fakediscord-site-"))
            _install.write_sitecustomize(self._site_dir)
        return _install.subprocess_environment(
            self._site_dir,
            self.api_base,
            self.gateway_url,
            fast_identify=fast_identify,
            base=dict(base) if base is not None else None,
        )

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

    # ------------------------------------------------------------------------------------------------------
    # builders
    def add_guild(
        self,
        name: str = "Test Guild",
        *,
        premium_tier: int = 0,
        owner: str | None = "owner",
        shard: tuple[int, int] | None = None,
        bot_permissions: Any = DEFAULT_BOT_PERMISSIONS,
        everyone_permissions: Any = DEFAULT_EVERYONE_PERMISSIONS,
        upload_limit: int | None = None,
        locale: str = "en-US",
    ) -> FakeGuild:
        """A guild with @everyone, the bot's managed role and the bot member; ``owner`` names an owner member
        to create (``None``: none yet, make one with ``add_member(..., owner=True)``). ``shard=(id, count)``
        picks a guild id Discord would route to that shard."""
        gid = self._ids.next(shard=shard)
        guild = FakeGuild(
            self,
            gid,
            name,
            owner_id=0,
            premium_tier=premium_tier,
            upload_limit_override=upload_limit,
            preferred_locale=locale,
        )
        guild.roles[gid] = FakeRole(gid, gid, "@everyone", _perm_value(everyone_permissions), position=0)
        bot_role = self._ids.next()
        guild.roles[bot_role] = FakeRole(
            bot_role,
            gid,
            self.bot_user.name,
            _perm_value(bot_permissions),
            position=1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.members[self.bot_user.id] = FakeMember(self.bot_user, guild, [bot_role])
        self.guilds[gid] = guild
        if owner is not None:
            guild.add_member(owner, owner=True)
        return guild

    def setup_default(self, *, premium_tier: int = 0) -> DefaultSetup:
        """One guild: owner, admin (Manage Server), moderator, alice and bob; #general, #images, #mod-log."""
        guild = self.add_guild("Image Hub Test", premium_tier=premium_tier)
        admin_role = guild.add_role("Admin", MANAGE_GUILD | MANAGE_MESSAGES, color=0xE74C3C, hoist=True)
        mod_role = guild.add_role("Moderator", MANAGE_MESSAGES | MODERATE_MEMBERS, color=0x3498DB)
        setup = DefaultSetup(
            guild=guild,
            owner=guild.owner,
            admin=guild.add_member("admin", roles=[admin_role]),
            moderator=guild.add_member("moderator", roles=[mod_role]),
            alice=guild.add_member("alice"),
            bob=guild.add_member("bob"),
            admin_role=admin_role,
            moderator_role=mod_role,
            general=guild.add_channel("general"),
            images=guild.add_channel("images"),
            mod_log=guild.add_channel("mod-log"),
        )
        self.default = setup
        return setup

    def register_attachment(self, attachment: FakeAttachment) -> FakeAttachment:
        """Give ``attachment`` an id and a download URL on the fake (done automatically when used)."""
        if not attachment.id:
            attachment.id = self._ids.next()
        if not attachment.url:
            from urllib.parse import quote

            attachment.url = f"{self.url}/attachments/{attachment.id}/{quote(attachment.filename)}"
        attachment.signer = self.signed_url
        self._attachments[attachment.id] = attachment
        return attachment

    def signed_url(self, url: str | FakeAttachment) -> str:
        """A CDN URL signed as Discord signs them (``ex`` expiry, ``is`` issue time, ``hm`` signature),
        valid for ``cdn_url_lifetime`` seconds from now. Every payload the fake sends carries fresh ones."""
        base = url.url if isinstance(url, FakeAttachment) else url.split("?", 1)[0]
        issued = int(time.time())
        expires = issued + max(0, math.ceil(self.cdn_url_lifetime))
        return f"{base}?ex={expires:08x}&is={issued:08x}&hm={self._cdn_signature(base, expires, issued)}&"

    def _cdn_signature(self, base: str, expires: int, issued: int) -> str:
        path = base.split("/attachments/", 1)[-1]
        signed = f"{self._cdn_epoch}:{path}:{expires}:{issued}".encode()
        return hmac.new(self._cdn_secret, signed, hashlib.sha256).hexdigest()

    def expire_cdn_urls(self) -> None:
        """Every attachment URL issued so far stops working now, as if its ``ex`` had passed (no waiting);
        payloads sent from now on (a fetched message, an interaction) carry fresh ones."""
        self._cdn_epoch += 1

    def _cdn_url_valid(self, base: str, query: Mapping[str, str]) -> bool:
        try:
            expires, issued = int(query["ex"], 16), int(query["is"], 16)
        except (KeyError, ValueError):
            return False
        expected = self._cdn_signature(base, expires, issued)
        return hmac.compare_digest(expected, query.get("hm", "")) and time.time() < expires

    def channel(self, channel_id: int) -> FakeChannel:
        return self._channel_index[channel_id]

    def guild(self, guild_id: int | FakeGuild) -> FakeGuild:
        return guild_id if isinstance(guild_id, FakeGuild) else self.guilds[guild_id]

    def message(self, message_id: int) -> FakeMessage:
        return self._messages[message_id]

    # ------------------------------------------------------------------------------------------------------
    # state inspection
    def messages(
        self,
        channel_id: int,
        *,
        source: str | Iterable[str] | None = None,
        include_ephemeral: bool = False,
        include_deleted: bool = False,
    ) -> list[FakeMessage]:
        """Messages in a channel, oldest first. ``source``: "channel" (bot posts), "interaction", "followup",
        "user" (or several); default all."""
        sources = {source} if isinstance(source, str) else set(source) if source is not None else None
        return [
            m
            for m in self._channel_messages.get(channel_id, [])
            if (include_ephemeral or not m.ephemeral)
            and (include_deleted or not m.deleted)
            and (sources is None or m.source in sources)
        ]

    async def wait_message(
        self,
        channel_id: int,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 5.0,
        *,
        source: str | Iterable[str] | None = "channel",
        after: int | FakeMessage | None = None,
    ) -> FakeMessage:
        """The first message in ``channel_id`` (by default: posted by the bot with ``POST …/messages``)
        matching ``predicate``, already there or yet to come; ``after`` skips messages up to that id."""
        after_id = after.id if isinstance(after, FakeMessage) else (after or 0)

        def check() -> FakeMessage | None:
            for m in self.messages(channel_id, source=source, include_ephemeral=True):
                if m.id > after_id and (predicate is None or predicate(m)):
                    return m
            return None

        return await self.wait_for(check, timeout, what=f"a message in channel {channel_id}")

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """Registered commands (global when ``guild_id`` is None), as the fake answers them."""
        return list(self._commands.get(guild_id, {}).values())

    def command(self, name: str, guild_id: int | None = None, type: int | None = None) -> dict[str, Any]:
        for (n, t), cmd in self._commands.get(guild_id, {}).items():
            if n == name and (type is None or t == type):
                return cmd
        raise KeyError(
            f"no command {name!r} registered ({'guild ' + str(guild_id) if guild_id else 'global'})"
        )

    async def wait_commands_synced(
        self,
        timeout: float = 5.0,
        *,
        guild_id: int | None = None,
        any_scope: bool = True,
    ) -> list[dict[str, Any]]:
        """Wait for a bulk command overwrite; returns the commands registered in that scope. By default any
        scope counts (``any_scope=False``: only ``guild_id``'s, where None means global)."""

        def check() -> CommandSync | None:
            for sync in self.command_syncs:
                if (any_scope and guild_id is None) or sync.guild_id == guild_id:
                    return sync
            return None

        sync = await self.wait_for(check, timeout, what="an application command sync")
        return self.commands(sync.guild_id)

    @property
    def identify_count(self) -> int:
        return len(self.sessions)

    def connected_shards(self) -> list[int]:
        return sorted(s.shard_id for s in self._sessions_by_shard.values() if s.connected)

    async def wait_ready(
        self,
        shard_count: int | None = None,
        timeout: float = 10.0,
        *,
        since: int = 0,
    ) -> list[GatewaySession]:
        """Wait until every shard (``shard_count``, default: as the client identified) has a connected session
        that got READY and its GUILD_CREATEs. ``since``: only sessions identified after ``identify_count``
        had that value (for restarts)."""

        def check() -> list[GatewaySession] | None:
            count = shard_count or self._shard_count
            if not count:
                return None
            out = []
            for i in range(count):
                s = self._sessions_by_shard.get(i)
                if s is None or not s.ready or not s.connected or s.index <= since or s.shard_count != count:
                    return None
                out.append(s)
            return out

        return await self.wait_for(check, timeout, what="the bot to identify and receive its guilds")

    async def wait_disconnected(self, timeout: float = 10.0) -> None:
        """Wait until no gateway connection is open (e.g. after killing the bot process)."""
        await self.wait_for(
            lambda: not any(not c.closed and not c.ws.closed for c in self._connections) or None,
            timeout,
            what="all gateway connections to close",
        )

    # ------------------------------------------------------------------------------------------------------
    # fault knobs
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
        self._faults.append(rule)
        return rule

    async def delete_channel(self, channel_id: int, *, notify: bool = True) -> None:
        """Delete a channel: later requests on it answer 404 10003 Unknown Channel (CHANNEL_DELETE sent)."""
        channel = self._channel_index[channel_id]
        self._deleted_channels.add(channel_id)
        if channel.guild_id is not None:
            guild = self.guilds[channel.guild_id]
            guild.channels.pop(channel_id, None)
            if notify:
                await self._dispatch_guild_event(guild.id, "CHANNEL_DELETE", channel.to_payload())
        self._notify()

    async def deny_send(self, channel_id: int, *, update_overwrite: bool = True) -> None:
        """Posts to the channel answer 403 50013 Missing Permissions. ``update_overwrite`` also adds a member
        overwrite denying Send Messages to the bot and sends CHANNEL_UPDATE (so the bot's cache can know)."""
        self._denied_channels.add(channel_id)
        if update_overwrite:
            await self._set_bot_send_overwrite(channel_id, deny=True)

    async def set_bot_overwrite(self, channel_id: int, *, allow: int = 0, deny: int = 0) -> None:
        """Set (or with neither, remove) a member overwrite for the bot in a channel and send CHANNEL_UPDATE,
        as when a moderator edits the channel: the fake's REST checks and the bot's cache both follow it."""
        channel = self._channel_index[channel_id]
        channel.set_overwrite(self.bot_user.id, type=1, allow=allow, deny=deny)
        if channel.guild_id is not None:
            await self._dispatch_guild_event(channel.guild_id, "CHANNEL_UPDATE", channel.to_payload())

    async def allow_send(self, channel_id: int) -> None:
        self._denied_channels.discard(channel_id)
        await self._set_bot_send_overwrite(channel_id, deny=False)

    async def _set_bot_send_overwrite(self, channel_id: int, *, deny: bool) -> None:
        channel = self._channel_index[channel_id]
        if channel.guild_id is None:
            return
        channel.set_overwrite(self.bot_user.id, type=1, deny=SEND_MESSAGES if deny else 0)
        await self._dispatch_guild_event(channel.guild_id, "CHANNEL_UPDATE", channel.to_payload())

    def expire_interaction(self, interaction: FakeInteraction | str) -> None:
        """Make the interaction token unusable as after 15 minutes: webhook calls answer 401 50027."""
        it = (
            interaction
            if isinstance(interaction, FakeInteraction)
            else self._interactions_by_token[interaction]
        )
        it.expired = True

    # gateway controls
    async def drop_shard(self, shard_id: int, code: int = 4000) -> None:
        """Close a shard's websocket with ``code`` (4000: the client RESUMEs)."""
        session = self._sessions_by_shard[shard_id]
        if session.conn is not None:
            conn = session.conn
            self._spawn(conn.close(code))

    async def request_reconnect(self, shard_id: int) -> None:
        """Send op 7 RECONNECT (the client closes and RESUMEs)."""
        session = self._sessions_by_shard[shard_id]
        if session.conn is not None:
            await session.conn.send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})

    async def invalidate_session(self, shard_id: int, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION (``resumable=False``: the client re-IDENTIFYs)."""
        session = self._sessions_by_shard[shard_id]
        if not resumable:
            session.invalidated = True
        if session.conn is not None:
            await session.conn.send({"op": OP_INVALID_SESSION, "d": resumable, "s": None, "t": None})

    async def join_guild(self, guild: FakeGuild) -> None:
        """Send GUILD_CREATE for a guild added after READY (the bot "joins" it)."""
        session = self._live_session_for(guild.id)
        presences = session is not None and bool(session.intents & INTENT_GUILD_PRESENCES)
        await self._dispatch_guild_event(guild.id, "GUILD_CREATE", guild.to_payload(all_members=presences))

    async def remove_guild(self, guild_id: int) -> None:
        """The bot is removed from a guild: GUILD_DELETE."""
        self.guilds.pop(guild_id)
        await self._dispatch_guild_event(
            guild_id, "GUILD_DELETE", {"id": str(guild_id), "unavailable": False}, shard_guild=guild_id
        )

    # ------------------------------------------------------------------------------------------------------
    # interactions (test side)
    def _find_command(self, name: str, guild_id: int, ctype: int) -> tuple[dict[str, Any] | None, bool]:
        cmd = self._commands.get(guild_id, {}).get((name, ctype))
        if cmd is not None:
            return cmd, True
        return self._commands.get(None, {}).get((name, ctype)), False

    def _check_command_allowed(self, cmd: dict[str, Any], member: FakeMember, name: str) -> None:
        perms = cmd.get("default_member_permissions")
        if perms is None:
            return
        needed = int(perms)
        have = member.permissions
        if have & ADMINISTRATOR or (needed and have & needed == needed):
            return
        raise PermissionError(
            f"{member.name} lacks default_member_permissions={needed} for {name!r}: "
            "Discord would not show the "
            "command to them (pass force=True to send it anyway)"
        )

    def _new_interaction(
        self,
        itype: int,
        name: str | None,
        guild: FakeGuild,
        channel_id: int,
        member: FakeMember,
        data: dict[str, Any],
        *,
        message: FakeMessage | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        if channel_id not in guild.channels:
            raise KeyError(f"channel {channel_id} is not in guild {guild.name!r}")
        if member.id not in guild.members:
            raise KeyError(f"{member.name} is not a member of guild {guild.name!r}")
        iid = self._ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        channel = guild.channels[channel_id].to_payload()
        channel["permissions"] = str(guild.channel_permissions(member, channel_id))
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "guild": guild.interaction_guild_payload(),
            "guild_id": str(guild.id),
            "channel": channel,
            "channel_id": str(channel_id),
            "member": member.to_payload(permissions=guild.channel_permissions(member, channel_id)),
            "token": token,
            "version": 1,
            "app_permissions": str(guild.channel_permissions(guild.bot_member, channel_id)),
            "locale": locale,
            "guild_locale": guild.preferred_locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": guild.upload_limit,
        }
        if message is not None:
            payload["message"] = message.to_payload(self._resolve_reference)
        return FakeInteraction(
            self, iid, token, itype, name, guild.id, channel_id, member, payload, source_message=message
        )

    async def _send_interaction(self, it: FakeInteraction, ready_timeout: float) -> FakeInteraction:
        session = await self.wait_for(
            lambda: self._live_session_for(it.guild_id),
            ready_timeout,
            what=f"a connected, ready gateway session for guild {it.guild_id}",
        )
        self.interactions.append(it)
        self._interactions_by_token[it.token] = it
        it.created_at = asyncio.get_running_loop().time()
        await session.dispatch("INTERACTION_CREATE", it.payload)
        self._notify()
        return it

    async def slash(
        self,
        guild_id: int | FakeGuild,
        channel_id: int,
        member: FakeMember,
        command: str | Sequence[str],
        options: Mapping[str, Any] | Sequence[dict[str, Any]] | None = None,
        *,
        attachments: Sequence[FakeAttachment] = (),
        force: bool = False,
        locale: str = "en-US",
        ready_timeout: float = 5.0,
        _autocomplete_focus: str | None = None,
    ) -> FakeInteraction:
        """Invoke a slash command. ``command``: "name", "group sub" or ["group", "sub"]; ``options``: a dict
        of leaf option values (typed by the registered definition: FakeAttachment, FakeMember, FakeRole,
        channel id…), a nested dict ``{"sub": {"opt": 1}}``, or raw Discord option dicts. ``attachments``
        fill the command's attachment options in order. Refuses (``PermissionError``) when ``member`` lacks
        the command's ``default_member_permissions``, unless ``force``."""
        guild = self.guild(guild_id)
        path = command.split() if isinstance(command, str) else list(command)
        values: Mapping[str, Any] | None = options if isinstance(options, Mapping) else None
        while values is not None and len(values) == 1:
            ((key, inner),) = values.items()
            if isinstance(inner, Mapping):
                path.append(key)
                values = inner
            else:
                break
        root, sub = path[0], path[1:]
        cmd, is_guild = self._find_command(root, guild.id, 1)
        if cmd is None and self.strict_commands:
            raise LookupError(
                f"slash command {root!r} is not registered (registered: "
                f"{[c['name'] for c in self.commands() + self.commands(guild.id)]})"
            )
        if cmd is not None and not force:
            self._check_command_allowed(cmd, member, root)
        builder = OptionBuilder(self, guild.id, channel_id)
        if options is not None and not isinstance(options, Mapping):
            leaf: list[dict[str, Any]] = [dict(o) for o in options]
            built = nest_options(sub, leaf, cmd.get("options") if cmd else None) if sub else leaf
        else:
            defs = leaf_definitions(cmd, sub)
            vals = dict(values or {})
            pending = list(attachments)
            for d in defs or []:
                if pending and d.get("type") == OPT_ATTACHMENT and d["name"] not in vals:
                    vals[d["name"]] = pending.pop(0)
            if pending:
                raise ValueError("more attachments than attachment options")
            leaf = builder.build(defs, vals, focused=_autocomplete_focus, validate=not force)
            built = nest_options(sub, leaf, cmd.get("options") if cmd else None)
        data: dict[str, Any] = {
            "id": str(cmd["id"]) if cmd else str(self._ids.next()),
            "name": root,
            "type": 1,
        }
        if built:
            data["options"] = built
        if builder.resolved:
            data["resolved"] = builder.resolved
        if is_guild:
            data["guild_id"] = str(guild.id)
        itype = AUTOCOMPLETE if _autocomplete_focus is not None else APPLICATION_COMMAND
        it = self._new_interaction(itype, " ".join(path), guild, channel_id, member, data, locale=locale)
        return await self._send_interaction(it, ready_timeout)

    async def autocomplete(
        self,
        guild_id: int | FakeGuild,
        channel_id: int,
        member: FakeMember,
        command: str | Sequence[str],
        options: Mapping[str, Any],
        focused: str,
        *,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Send an autocomplete interaction (``focused`` names the option being typed, its value in
        ``options`` is the partial text) and return the choices the bot answered with."""
        if focused not in options:
            raise ValueError(f"{focused!r} must be in options (its value is the text typed so far)")
        it = await self.slash(
            guild_id, channel_id, member, command, options, force=True, _autocomplete_focus=focused
        )
        return await it.choices(timeout)

    async def message_command(
        self,
        guild_id: int | FakeGuild,
        channel_id: int,
        member: FakeMember,
        name: str,
        target_message: FakeMessage,
        *,
        force: bool = False,
        locale: str = "en-US",
        ready_timeout: float = 5.0,
    ) -> FakeInteraction:
        """Invoke a message context-menu command on ``target_message``."""
        guild = self.guild(guild_id)
        cmd, is_guild = self._find_command(name, guild.id, 3)
        if cmd is None and self.strict_commands:
            raise LookupError(f"message command {name!r} is not registered")
        if cmd is not None and not force:
            self._check_command_allowed(cmd, member, name)
        data: dict[str, Any] = {
            "id": str(cmd["id"]) if cmd else str(self._ids.next()),
            "name": name,
            "type": 3,
            "target_id": str(target_message.id),
            "resolved": {
                "messages": {str(target_message.id): target_message.to_payload(self._resolve_reference)}
            },
        }
        if is_guild:
            data["guild_id"] = str(guild.id)
        it = self._new_interaction(APPLICATION_COMMAND, name, guild, channel_id, member, data, locale=locale)
        return await self._send_interaction(it, ready_timeout)

    async def user_command(
        self,
        guild_id: int | FakeGuild,
        channel_id: int,
        member: FakeMember,
        name: str,
        target: FakeMember,
        *,
        force: bool = False,
        ready_timeout: float = 5.0,
    ) -> FakeInteraction:
        """Invoke a user context-menu command on ``target``."""
        guild = self.guild(guild_id)
        cmd, is_guild = self._find_command(name, guild.id, 2)
        if cmd is None and self.strict_commands:
            raise LookupError(f"user command {name!r} is not registered")
        if cmd is not None and not force:
            self._check_command_allowed(cmd, member, name)
        builder = OptionBuilder(self, guild.id, channel_id)
        builder.resolve_user(target)
        data: dict[str, Any] = {
            "id": str(cmd["id"]) if cmd else str(self._ids.next()),
            "name": name,
            "type": 2,
            "target_id": str(target.id),
            "resolved": builder.resolved,
        }
        if is_guild:
            data["guild_id"] = str(guild.id)
        it = self._new_interaction(APPLICATION_COMMAND, name, guild, channel_id, member, data)
        return await self._send_interaction(it, ready_timeout)

    async def press_button(
        self,
        message: FakeMessage,
        custom_id: str,
        member: FakeMember,
        *,
        values: Sequence[str] | None = None,
        force: bool = False,
        ready_timeout: float = 5.0,
    ) -> FakeInteraction:
        """Click a button (or pick ``values`` in a select) of ``message``. Refuses missing/disabled components
        unless ``force`` (Discord's client could not send those)."""
        comp = message.find_component(custom_id)
        if comp is None and not force:
            raise LookupError(
                f"message {message.id} has no component {custom_id!r} (has {message.custom_ids})"
            )
        if comp is not None and comp.get("disabled") and not force:
            raise ValueError(f"component {custom_id!r} is disabled")
        ctype = int(comp["type"]) if comp else (3 if values is not None else 2)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": ctype}
        if ctype in (3, 5, 6, 7, 8):
            data["values"] = [str(v) for v in values or []]
        if message.guild_id is None:
            raise ValueError("component interactions are only supported in guild channels")
        guild = self.guilds[message.guild_id]
        it = self._new_interaction(
            MESSAGE_COMPONENT, custom_id, guild, message.channel_id, member, data, message=message
        )
        return await self._send_interaction(it, ready_timeout)

    async def select(
        self, message: FakeMessage, custom_id: str, values: Sequence[str], member: FakeMember, **kwargs: Any
    ) -> FakeInteraction:
        return await self.press_button(message, custom_id, member, values=values, **kwargs)

    async def submit_modal(
        self,
        source: FakeInteraction | str,
        values: Mapping[str, Any],
        member: FakeMember | None = None,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        components: list[dict[str, Any]] | None = None,
        timeout: float = 5.0,
    ) -> FakeInteraction:
        """Submit the modal the bot opened in answer to ``source`` (or a modal by custom id, with
        ``components`` or plain text inputs named by ``values``). ``values``: custom_id → text (text input),
        list of strings (selects, checkbox group), list of FakeAttachment (file upload), bool (checkbox)."""
        message: FakeMessage | None = None
        if isinstance(source, FakeInteraction):
            cb = await source.callback(timeout)
            if cb.type != CB_MODAL:
                raise AssertionError(f"the bot answered with callback type {cb.type}, not a modal (9)")
            custom_id = cb.data["custom_id"]
            comps = cb.data.get("components") or []
            member = member or source.member
            guild_id = source.guild_id
            channel_id = source.channel_id
            message = source.source_message
        else:
            custom_id = source
            comps = components or [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "required": False}]} for k in values
            ]
            if member is None or guild_id is None or channel_id is None:
                raise ValueError("a modal by custom id needs member, guild_id and channel_id")
        submit, resolved = modal_submit_components(
            comps, values, lambda a: self.register_attachment(a).to_payload()
        )
        data: dict[str, Any] = {"custom_id": custom_id, "components": submit}
        if resolved:
            data["resolved"] = resolved
        guild = self.guilds[guild_id]
        it = self._new_interaction(MODAL_SUBMIT, custom_id, guild, channel_id, member, data, message=message)
        return await self._send_interaction(it, timeout)

    async def user_message(
        self,
        channel_id: int,
        member: FakeMember,
        content: str = "",
        *,
        attachments: Sequence[FakeAttachment] = (),
        embeds: Sequence[dict[str, Any]] = (),
        dispatch: bool = True,
    ) -> FakeMessage:
        """A message written by a (human) member, stored in the channel (usable as a context-menu target or as
        a reference); MESSAGE_CREATE is dispatched when ``dispatch`` and the bot's intents want it."""
        for a in attachments:
            self.register_attachment(a)
        channel = self._channel_index[channel_id]
        msg = FakeMessage(
            self._ids.next(),
            channel_id,
            channel.guild_id,
            member.user,
            content=content,
            embeds=list(embeds),
            attachments=list(attachments),
            source="user",
            member=member,
        )
        await self._store_message(msg, dispatch=dispatch)
        return msg

    def _live_session_for(self, guild_id: int | None) -> GatewaySession | None:
        count = self._shard_count
        if not count:
            return None
        shard = (guild_id >> 22) % count if guild_id else 0
        s = self._sessions_by_shard.get(shard)
        if s is None or not s.ready or not s.connected or s.invalidated:
            return None
        return s

    async def _dispatch_guild_event(
        self,
        guild_id: int | None,
        event: str,
        data: dict[str, Any],
        *,
        shard_guild: int | None = None,
        intent: int | None = None,
    ) -> None:
        count = self._shard_count
        if not count:
            return
        shard = ((shard_guild or guild_id or 0) >> 22) % count
        s = self._sessions_by_shard.get(shard)
        if s is None or s.invalidated:
            return
        if intent is not None and not s.intents & intent:
            return
        await s.dispatch(event, data)

    # ------------------------------------------------------------------------------------------------------
    # HTTP plumbing
    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _build_routes(self) -> None:
        app = r"(?P<app>\d+)"
        snow = r"(?P<{}>\d+)"
        r = self._routes

        def add(method: str, pattern: str, handler: Handler) -> None:
            r.append((method, re.compile("^" + pattern + "$"), handler))

        add("GET", r"/users/@me", self._h_me)
        add("GET", r"/users/" + snow.format("uid"), self._h_user)
        add("POST", r"/users/@me/channels", self._h_create_dm)
        add("GET", r"/oauth2/applications/@me", self._h_appinfo)
        add("GET", r"/applications/@me", self._h_appinfo)
        add("GET", r"/gateway", self._h_gateway)
        add("GET", r"/gateway/bot", self._h_gateway_bot)
        add("POST", r"/attachments/refresh-urls", self._h_refresh_urls)
        for scope in ("", "/guilds/" + snow.format("gid")):
            base = "/applications/" + app + scope + "/commands"
            add("GET", base, self._h_commands_get)
            add("PUT", base, self._h_commands_put)
            add("POST", base, self._h_command_upsert)
            add("GET", base + "/" + snow.format("cid"), self._h_command_get)
            add("PATCH", base + "/" + snow.format("cid"), self._h_command_patch)
            add("DELETE", base + "/" + snow.format("cid"), self._h_command_delete)
        add(
            "GET",
            "/applications/" + app + "/guilds/" + snow.format("gid") + "/commands/permissions",
            self._h_command_permissions,
        )
        add("POST", r"/interactions/" + snow.format("iid") + r"/(?P<token>[^/]+)/callback", self._h_callback)
        wh = r"/webhooks/" + app + r"/(?P<token>[^/]+)"
        add("POST", wh, self._h_followup)
        add("GET", wh + r"/messages/(?P<mid>@original|\d+)", self._h_webhook_get)
        add("PATCH", wh + r"/messages/(?P<mid>@original|\d+)", self._h_webhook_patch)
        add("DELETE", wh + r"/messages/(?P<mid>@original|\d+)", self._h_webhook_delete)
        ch = r"/channels/" + snow.format("cid")
        add("GET", ch, self._h_channel_get)
        add("GET", ch + r"/messages", self._h_history)
        add("POST", ch + r"/messages", self._h_message_create)
        add("GET", ch + r"/messages/" + snow.format("mid"), self._h_message_get)
        add("PATCH", ch + r"/messages/" + snow.format("mid"), self._h_message_patch)
        add("DELETE", ch + r"/messages/" + snow.format("mid"), self._h_message_delete)
        add("POST", ch + r"/typing", self._h_typing)
        add(
            "PUT",
            ch + r"/messages/" + snow.format("mid") + r"/reactions/(?P<emoji>[^/]+)/@me",
            self._h_reaction,
        )
        add(
            "DELETE",
            ch + r"/messages/" + snow.format("mid") + r"/reactions/(?P<emoji>[^/]+)/@me",
            self._h_reaction,
        )
        g = r"/guilds/" + snow.format("gid")
        add("GET", g, self._h_guild_get)
        add("GET", g + r"/channels", self._h_guild_channels)
        add("GET", g + r"/roles", self._h_guild_roles)
        add("GET", g + r"/members", self._h_guild_members)
        add("GET", g + r"/members/" + snow.format("uid"), self._h_guild_member)

    async def _parse_body(self, request: web.Request, rec: RecordedRequest) -> None:
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("multipart/"):
            rec.multipart = True
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                data = await part.read(decode=False)  # type: ignore[union-attr]
                name = part.name or ""  # type: ignore[union-attr]
                if name == "payload_json":
                    rec.json = json.loads(bytes(data).decode())
                else:
                    rec.files.append(
                        RecordedFile(
                            name,
                            part.filename,  # type: ignore[union-attr]
                            part.headers.get("Content-Type"),
                            bytes(data),
                        )
                    )
        elif request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    rec.json = json.loads(raw)
                except ValueError:
                    rec.json = raw.decode(errors="replace")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.rstrip("/") == "/gateway" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._ws_handler(request)
        api = path.startswith("/api/v10/")
        rel = path[len("/api/v10") :] if api else path
        rec = RecordedRequest(
            request.method,
            rel.rstrip("/") if api else rel,
            path,
            dict(request.query),
            dict(request.headers),
            None,
        )
        rec.received_at = asyncio.get_running_loop().time()
        self.requests.append(rec)
        response: web.StreamResponse
        limit_headers: dict[str, str] = {}
        try:
            await self._parse_body(request, rec)
            fault = self._fault_for(rec)
            if fault is None and api:
                fault, limit_headers = self._rate_limit(rec)
            if fault is None and api:
                fault = await self._check_spec(rec)
            response = fault if fault is not None else await self._route(request, rec, api)
        except HTTPError as exc:
            if exc.status == 400 and exc.body.get("code") in (50035, 50006):
                self.invalid_bodies.append(InvalidBody(rec, "rules", exc.body))
            response = _json_response(exc.body, status=exc.status)
        except Exception as exc:  # a bug in the fake: make it loud
            self.internal_errors.append(exc)
            response = _error_response(503, 0, f"fake internal error: {exc!r}")
        if api:
            for key, value in limit_headers.items():
                response.headers.setdefault(key, value)
            if response.status in (401, 403, 429):
                self.invalid_requests.append(rec)
                self._limiter.count_invalid(response.status, response.headers.get("X-RateLimit-Scope"))
        rec.status = response.status
        if (
            isinstance(response, web.Response)
            and response.body is not None
            and response.headers.get("Content-Type") == JSON
        ):
            with contextlib.suppress(Exception):
                rec.response = json.loads(response.body)  # type: ignore[arg-type]
        for observer in self.observers:
            try:
                observer(rec)
            except Exception as exc:  # a broken observer is the harness's bug: make it loud
                self.internal_errors.append(exc)
        self._notify()
        return response

    def _rate_limit(self, rec: RecordedRequest) -> tuple[web.Response | None, dict[str, str]]:
        """Discord's rate limits (:mod:`.ratelimits`): a 429 when refused, and the headers for the answer."""
        self._limiter.settings = self.rate_limits
        banned = self._limiter.banned_for()
        if banned is not None:
            # Cloudflare's ban: no JSON, no Via header (discord.py raises at once instead of retrying).
            text = "error code: 1015"
            return web.Response(status=429, text=text, headers={"Retry-After": str(math.ceil(banned))}), {}
        found = route_index().match_params(rec.method, rec.path)
        template, params = found if found else (None, {})
        exempt = template is not None and (
            template.startswith("/interactions/")
            or (
                template.startswith("/webhooks/{webhook_id}/{webhook_token}")
                and params.get("webhook_id") == str(self.application_id)
            )
        )
        verdict = self._limiter.check(rec.method, template, params, exempt_global=exempt)
        if verdict.refused is None:
            return None, verdict.headers
        return _json_response(verdict.refused, status=429, headers=verdict.headers), {}

    def invalid_request_count(self) -> int:
        """401/403/429 answers in the invalid-request window (what Discord's 10,000 per 10 minutes counts)."""
        return self._limiter.invalid_in_window()

    async def _check_spec(self, rec: RecordedRequest) -> web.Response | None:
        """Hold the request against Discord's OpenAPI spec: its route must exist there, and its JSON body (or
        ``payload_json``) must fit the route's request schema, judged in the validation worker process."""
        template = route_index().match(rec.method, rec.path)
        if template is None:
            self.unspecced_routes.append(rec)
            return None  # the handler still answers (or 404s): the test fails at teardown either way
        if rec.json is None:
            return None
        verdict, seconds = await ValidatorPool.check(template, rec.method, rec.json)
        self.spec_check_seconds.append(seconds)
        if verdict is None:
            return None
        self.invalid_bodies.append(InvalidBody(rec, "spec", verdict))
        return _json_response(verdict, status=400)

    async def _route(self, request: web.Request, rec: RecordedRequest, api: bool) -> web.StreamResponse:
        if not api:
            m = re.fullmatch(r"/attachments/(?P<aid>\d+)/(?P<filename>[^/]+)", rec.path)
            if rec.method in ("GET", "HEAD") and m:
                return await self._h_attachment(int(m["aid"]), rec)
            return self._unknown(rec)
        for method, pattern, handler in self._routes:
            if method != rec.method:
                continue
            m = pattern.match(rec.path)
            if m is None:
                continue
            public = rec.path.startswith(("/webhooks/", "/interactions/")) or rec.path == "/gateway"
            if not public and request.headers.get("Authorization") != f"Bot {self.token}":
                return _error_response(401, 0, "401: Unauthorized")
            return await handler(rec, m)
        return self._unknown(rec)

    def _unknown(self, rec: RecordedRequest) -> web.Response:
        self.unknown_routes.append(rec)
        return _error_response(404, 0, "404: Not Found")

    def _fault_for(self, rec: RecordedRequest) -> web.Response | None:
        rule = next((f for f in self._faults if f.matches(rec)), None)
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
            return _json_response(body, status=429, headers=headers)
        messages = {
            500: "500: Internal Server Error",
            502: "502: Bad Gateway",
            503: "503: Service Unavailable",
            504: "504: Gateway Timeout",
        }
        body = rule.body or {"message": messages.get(rule.status, f"{rule.status}: Error"), "code": 0}
        return _json_response(body, status=rule.status)

    # ------------------------------------------------------------------------------------------------------
    # REST handlers: identity
    def _bot_user_payload(self) -> dict[str, Any]:
        payload = self.bot_user.to_payload()
        payload.update(
            {
                "verified": True,
                "mfa_enabled": False,
                "flags": 0,
                "email": None,
                "locale": "en-US",
                "banner": None,
                "accent_color": None,
            }
        )
        return payload

    async def _h_me(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json_response(self._bot_user_payload())

    async def _h_user(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        user = self.users.get(int(m["uid"]))
        if user is None:
            raise HTTPError(404, 10013, "Unknown User")
        return _json_response(user.to_payload())

    async def _h_appinfo(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user.name,
                "icon": None,
                "description": "Fake application",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self.app_owner.to_payload(),
                "team": None,
                "flags": 0,
                "hook": True,
                "tags": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "approximate_guild_count": len(self.guilds),
                "bot": self._bot_user_payload(),
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
                "integration_types_config": {"0": {}},
            }
        )

    async def _h_gateway(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json_response({"url": self.gateway_url.rstrip("/")})

    async def _h_gateway_bot(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json_response(
            {
                "url": self.gateway_url.rstrip("/"),
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000 - len(self.sessions),
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _h_create_dm(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        uid = int((rec.json or {}).get("recipient_id", 0))
        user = self.users.get(uid)
        if user is None:
            raise HTTPError(400, 50033, "Invalid Recipient(s)")
        for ch in self._channel_index.values():
            if ch.type == 1 and ch.recipients and ch.recipients[0].id == uid:
                return _json_response(ch.to_payload())
        cid = self._ids.next()
        channel = FakeChannel(cid, None, "", type=1, recipients=[user])
        self._channel_index[cid] = channel
        return _json_response(channel.to_payload())

    # ------------------------------------------------------------------------------------------------------
    # REST handlers: application commands
    def _scope(self, m: re.Match[str]) -> int | None:
        if int(m["app"]) != self.application_id:
            raise HTTPError(403, 50001, "Missing Access")
        gid = m.groupdict().get("gid")
        if gid is None:
            return None
        if int(gid) not in self.guilds:
            raise HTTPError(403, 50001, "Missing Access")
        return int(gid)

    def _command_from_payload(self, p: dict[str, Any], cid: int, guild_id: int | None) -> dict[str, Any]:
        ctype = int(p.get("type", 1))
        perms = p.get("default_member_permissions")
        cmd = {
            "id": str(cid),
            "application_id": str(self.application_id),
            "version": str(self._ids.next()),
            "type": ctype,
            "name": p["name"],
            "name_localizations": p.get("name_localizations"),
            "description": p.get("description", "") if ctype == 1 else "",
            "description_localizations": p.get("description_localizations"),
            "default_member_permissions": None if perms is None else str(perms),
            "dm_permission": p.get("dm_permission", True),
            "nsfw": p.get("nsfw", False),
            "contexts": p.get("contexts"),
            "integration_types": p.get("integration_types", [0]),
        }
        if p.get("options"):
            cmd["options"] = p["options"]
        if guild_id is not None:
            cmd["guild_id"] = str(guild_id)
        return cmd

    async def _h_commands_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json_response(self.commands(self._scope(m)))

    async def _h_commands_put(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        scope = self._scope(m)
        payload = rec.json if isinstance(rec.json, list) else []
        error = validation.check_commands(payload, guild=scope is not None)
        if error is not None:
            return _json_response(error, status=400)
        old = self._commands.get(scope, {})
        new: dict[tuple[str, int], dict[str, Any]] = {}
        for p in payload:
            key = (p["name"], int(p.get("type", 1)))
            prev = old.get(key)
            new[key] = self._command_from_payload(p, int(prev["id"]) if prev else self._ids.next(), scope)
        self._commands[scope] = new
        self.command_syncs.append(CommandSync(scope, payload, list(new.values())))
        return _json_response(list(new.values()))

    async def _h_command_upsert(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        scope = self._scope(m)
        p = rec.json or {}
        error = validation.check_commands([p], guild=scope is not None)
        if error is not None:
            return _json_response(error, status=400)
        store = self._commands.setdefault(scope, {})
        key = (p["name"], int(p.get("type", 1)))
        prev = store.get(key)
        store[key] = self._command_from_payload(p, int(prev["id"]) if prev else self._ids.next(), scope)
        return _json_response(store[key], status=200 if prev else 201)

    def _command_by_id(self, m: re.Match[str]) -> tuple[int | None, tuple[str, int], dict[str, Any]]:
        scope = self._scope(m)
        for key, cmd in self._commands.get(scope, {}).items():
            if cmd["id"] == m["cid"]:
                return scope, key, cmd
        raise HTTPError(404, 10063, "Unknown application command")

    async def _h_command_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json_response(self._command_by_id(m)[2])

    async def _h_command_patch(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        scope, key, cmd = self._command_by_id(m)
        merged = {**cmd, **(rec.json or {})}
        new = self._command_from_payload(merged, int(cmd["id"]), scope)
        store = self._commands[scope]
        del store[key]
        store[(new["name"], new["type"])] = new
        return _json_response(new)

    async def _h_command_delete(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        scope, key, _ = self._command_by_id(m)
        del self._commands[scope][key]
        return web.Response(status=204)

    async def _h_command_permissions(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        self._scope(m)
        return _json_response([])

    # ------------------------------------------------------------------------------------------------------
    # messages (shared)
    def _resolve_reference(self, ref: dict[str, Any]) -> FakeMessage | None:
        mid = ref.get("message_id")
        msg = self._messages.get(int(mid)) if mid else None
        return None if msg is None or msg.deleted else msg

    def _upload_limit(self, guild_id: int | None) -> int:
        guild = self.guilds.get(guild_id) if guild_id else None
        return guild.upload_limit if guild else UPLOAD_LIMIT_BY_TIER[0]

    def _check_files(self, files: list[RecordedFile], guild_id: int | None) -> None:
        """Discord's upload limits: each file at most the guild's limit by boost tier (what interactions carry
        as ``attachment_size_limit``), all files of one request together at most 25 MiB."""
        limit = self._upload_limit(guild_id)
        if any(len(f.data) > limit for f in files) or sum(len(f.data) for f in files) > MAX_REQUEST_BYTES:
            raise HTTPError(413, 40005, "Request entity too large")

    def _new_attachment(self, f: RecordedFile, entry: dict[str, Any] | None) -> FakeAttachment:
        entry = entry or {}
        att = FakeAttachment(
            filename=entry.get("filename") or f.filename or "unknown",
            data=f.data,
            description=entry.get("description"),
            upload_content_type=f.content_type,
        )
        return self.register_attachment(att)

    def _build_attachments(
        self, payload: dict[str, Any], files: list[RecordedFile], existing: list[FakeAttachment] | None
    ) -> list[FakeAttachment]:
        """The message's attachments after a create (``existing`` None) or an edit."""
        by_index = {f.index: f for f in files if f.index >= 0}
        entries = payload.get("attachments")
        if entries is None:
            return list(existing or []) + [self._new_attachment(f, None) for f in files]
        result: list[FakeAttachment] = []
        used: set[int] = set()
        for entry in entries:
            aid = int(entry["id"])
            ex = next((a for a in existing or [] if a.id == aid), None)
            if ex is not None:
                result.append(ex)
                continue
            f = by_index.get(aid)
            if f is None:
                raise HTTPError(
                    400,
                    50035,
                    "Invalid Form Body",
                    errors={
                        "attachments": {
                            "_errors": [
                                {
                                    "code": "ATTACHMENT_NOT_FOUND",
                                    "message": f"Attachment data not found for id {aid}",
                                }
                            ]
                        }
                    },
                )
            used.add(aid)
            result.append(self._new_attachment(f, entry))
        result.extend(self._new_attachment(f, None) for i, f in by_index.items() if i not in used)
        return result

    def _apply_edit(
        self, msg: FakeMessage, payload: dict[str, Any], files: list[RecordedFile], source: str
    ) -> None:
        error = validation.check_message(payload, len(files), create=False)
        if error is not None:
            raise HTTPError(
                400,
                error["code"],
                error["message"],
                **{k: v for k, v in error.items() if k not in ("code", "message")},
            )
        self._check_files(files, msg.guild_id)
        new_attachments = self._build_attachments(payload, files, msg.attachments)
        if "content" in payload:
            msg.content = payload["content"] or ""
        if "embeds" in payload:
            msg.embeds = list(payload["embeds"] or [])
        if "components" in payload:
            msg.components = list(payload["components"] or [])
        if "allowed_mentions" in payload:
            msg.allowed_mentions = payload["allowed_mentions"]
        if payload.get("flags") is not None:
            keep = msg.flags & (FLAG_EPHEMERAL | FLAG_SUPPRESS_NOTIFICATIONS)
            msg.flags = keep | (int(payload["flags"]) & ~(FLAG_EPHEMERAL | FLAG_LOADING))
        msg.flags &= ~FLAG_LOADING
        msg.attachments = new_attachments
        msg.edited_timestamp = now_iso()
        attached = [a for a in new_attachments if any(a.data is f.data for f in files)]
        msg.edits.append(FakeEdit(payload, attached, source))

    def _message_from_payload(
        self,
        payload: dict[str, Any],
        files: list[RecordedFile],
        channel_id: int,
        guild_id: int | None,
        *,
        flags_mask: int,
        source: str,
    ) -> FakeMessage:
        error = validation.check_message(payload, len(files), create=True)
        if error is not None:
            raise HTTPError(
                400,
                error["code"],
                error["message"],
                **{k: v for k, v in error.items() if k not in ("code", "message")},
            )
        self._check_files(files, guild_id)
        attachments = self._build_attachments(payload, files, None)
        return FakeMessage(
            self._ids.next(),
            channel_id,
            guild_id,
            self.bot_user,
            content=payload.get("content") or "",
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            attachments=attachments,
            flags=int(payload.get("flags") or 0) & flags_mask,
            allowed_mentions=payload.get("allowed_mentions"),
            tts=bool(payload.get("tts")),
            nonce=payload.get("nonce"),
            source=source,
            payload=payload,
        )

    async def _store_message(self, msg: FakeMessage, *, dispatch: bool = True) -> None:
        self._messages[msg.id] = msg
        self._channel_messages.setdefault(msg.channel_id, []).append(msg)
        channel = self._channel_index.get(msg.channel_id)
        if channel is not None:
            channel.last_message_id = msg.id
        if dispatch and self.echo_message_events and not msg.ephemeral:
            intent = INTENT_GUILD_MESSAGES if msg.guild_id else INTENT_DIRECT_MESSAGES
            await self._dispatch_guild_event(
                msg.guild_id, "MESSAGE_CREATE", msg.to_payload(self._resolve_reference), intent=intent
            )
        self._notify()

    async def _echo_update(self, msg: FakeMessage) -> None:
        if self.echo_message_events and not msg.ephemeral:
            intent = INTENT_GUILD_MESSAGES if msg.guild_id else INTENT_DIRECT_MESSAGES
            await self._dispatch_guild_event(
                msg.guild_id, "MESSAGE_UPDATE", msg.to_payload(self._resolve_reference), intent=intent
            )

    async def _echo_delete(self, msg: FakeMessage) -> None:
        if self.echo_message_events and not msg.ephemeral:
            data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id:
                data["guild_id"] = str(msg.guild_id)
            intent = INTENT_GUILD_MESSAGES if msg.guild_id else INTENT_DIRECT_MESSAGES
            await self._dispatch_guild_event(msg.guild_id, "MESSAGE_DELETE", data, intent=intent)

    # ------------------------------------------------------------------------------------------------------
    # REST handlers: channels
    def _channel_for(self, m: re.Match[str]) -> FakeChannel:
        cid = int(m["cid"])
        if cid in self._deleted_channels or cid not in self._channel_index:
            raise HTTPError(404, 10003, "Unknown Channel")
        return self._channel_index[cid]

    def _message_for(self, channel: FakeChannel, m: re.Match[str]) -> FakeMessage:
        msg = self._messages.get(int(m["mid"]))
        if msg is None or msg.deleted or msg.channel_id != channel.id or msg.ephemeral:
            raise HTTPError(404, 10008, "Unknown Message")
        return msg

    def _bot_permissions(self, channel: FakeChannel) -> int | None:
        """The bot's own permissions in a guild channel (roles and overwrites), None outside guilds."""
        if channel.guild_id is None:
            return None
        guild = self.guilds[channel.guild_id]
        return guild.channel_permissions(guild.bot_member, channel.id)

    def _require(self, channel: FakeChannel, needed: int) -> None:
        """403 as Discord answers a REST call the bot lacks permissions for: 50001 Missing Access without View
        Channel, else 50013 Missing Permissions. (Interaction responses and followups are webhooks: Discord
        does not check the bot's channel permissions for them, and neither does the fake.)"""
        perms = self._bot_permissions(channel)
        if perms is None:
            return
        if not perms & VIEW_CHANNEL:
            raise HTTPError(403, 50001, "Missing Access")
        if perms & needed != needed:
            raise HTTPError(403, 50013, "Missing Permissions")

    def _posting_needs(self, payload: dict[str, Any], files: list[RecordedFile], *, create: bool) -> int:
        needed = SEND_MESSAGES if create else 0
        if files:
            needed |= _ATTACH_FILES
        if payload.get("embeds"):
            needed |= _EMBED_LINKS
        if create and payload.get("message_reference"):
            needed |= READ_MESSAGE_HISTORY
        return needed

    async def _h_refresh_urls(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        """``POST /attachments/refresh-urls``: fresh signed URLs for attachments the fake knows (Discord's
        endpoint for expired CDN links; not in the OpenAPI spec, so a bot using it fails the spec rule)."""
        urls = (rec.json or {}).get("attachment_urls") if isinstance(rec.json, dict) else None
        if not isinstance(urls, list) or not urls or len(urls) > 50:
            raise HTTPError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "attachment_urls": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "Bad list"}]}
                },
            )
        refreshed = []
        for url in urls:
            found = re.search(r"/attachments/(\d+)/", str(url))
            att = self._attachments.get(int(found[1])) if found else None
            if att is not None:
                refreshed.append({"original": url, "refreshed": self.signed_url(att)})
        return _json_response({"refreshed_urls": refreshed})

    async def _h_channel_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json_response(self._channel_for(m).to_payload())

    async def _h_history(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._channel_for(m)
        self._require(channel, 0)
        perms = self._bot_permissions(channel)
        if perms is not None and not perms & READ_MESSAGE_HISTORY:
            return _json_response([])  # "If the current user is missing READ_MESSAGE_HISTORY … no messages"
        msgs = self.messages(channel.id)
        limit = min(int(rec.query.get("limit", 50)), 100)
        if "before" in rec.query:
            msgs = [x for x in msgs if x.id < int(rec.query["before"])]
        if "after" in rec.query:
            msgs = [x for x in msgs if x.id > int(rec.query["after"])][:limit]
        if "around" in rec.query:
            around = int(rec.query["around"])
            older = [x for x in msgs if x.id <= around][-(limit // 2 + 1) :]
            newer = [x for x in msgs if x.id > around][: limit - len(older)]
            msgs = older + newer
        msgs = msgs[-limit:]
        return _json_response([x.to_payload(self._resolve_reference) for x in reversed(msgs)])

    async def _h_message_create(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._channel_for(m)
        if channel.id in self._denied_channels:
            raise HTTPError(403, 50013, "Missing Permissions")
        payload = rec.json if isinstance(rec.json, dict) else {}
        self._require(channel, self._posting_needs(payload, rec.files, create=True))
        nonce = payload.get("nonce")
        nonce_key = (channel.id, self.bot_user.id, str(nonce))
        if nonce is not None and payload.get("enforce_nonce"):
            earlier = self._nonces.get(nonce_key)
            if earlier is not None and time.monotonic() - earlier[0] <= self.nonce_window:
                return _json_response(earlier[1].to_payload(self._resolve_reference))
        ref = payload.get("message_reference")
        msg = self._message_from_payload(
            payload,
            rec.files,
            channel.id,
            channel.guild_id,
            flags_mask=FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | (1 << 15),
            source="channel",
        )
        if ref:
            target = self._resolve_reference(ref)
            if target is None and ref.get("fail_if_not_exists", True):
                raise HTTPError(
                    400,
                    50035,
                    "Invalid Form Body",
                    errors={
                        "message_reference": {
                            "_errors": [
                                {"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}
                            ]
                        }
                    },
                )
            if target is not None:
                msg.message_reference = {
                    "type": ref.get("type", 0),
                    "message_id": str(target.id),
                    "channel_id": str(target.channel_id),
                    **({"guild_id": str(target.guild_id)} if target.guild_id else {}),
                }
                msg.type = 19
        if nonce is not None and payload.get("enforce_nonce"):
            self._nonces[nonce_key] = (time.monotonic(), msg)
        await self._store_message(msg)
        return _json_response(msg.to_payload(self._resolve_reference))

    async def _h_message_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._channel_for(m)
        self._require(channel, READ_MESSAGE_HISTORY)
        return _json_response(self._message_for(channel, m).to_payload(self._resolve_reference))

    async def _h_message_patch(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._channel_for(m)
        msg = self._message_for(channel, m)
        if msg.author.id != self.bot_user.id:
            raise HTTPError(403, 50005, "Cannot edit a message authored by another user")
        payload = rec.json if isinstance(rec.json, dict) else {}
        self._require(channel, self._posting_needs(payload, rec.files, create=False))
        self._apply_edit(msg, rec.json if isinstance(rec.json, dict) else {}, rec.files, "channel")
        await self._echo_update(msg)
        self._notify()
        return _json_response(msg.to_payload(self._resolve_reference))

    async def _h_message_delete(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self._channel_for(m)
        msg = self._message_for(channel, m)
        if msg.author.id != self.bot_user.id and channel.guild_id is not None:
            guild = self.guilds[channel.guild_id]
            if not guild.channel_permissions(guild.bot_member, channel.id) & MANAGE_MESSAGES:
                raise HTTPError(403, 50013, "Missing Permissions")
        msg.deleted = True
        await self._echo_delete(msg)
        return web.Response(status=204)

    async def _h_typing(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        self._channel_for(m)
        return web.Response(status=204)

    async def _h_reaction(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        self._message_for(self._channel_for(m), m)
        return web.Response(status=204)

    # ------------------------------------------------------------------------------------------------------
    # REST handlers: guilds
    def _guild_for(self, m: re.Match[str]) -> FakeGuild:
        guild = self.guilds.get(int(m["gid"]))
        if guild is None:
            raise HTTPError(404, 10004, "Unknown Guild")
        return guild

    async def _h_guild_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        payload = self._guild_for(m).to_payload()
        for key in (
            "channels",
            "members",
            "threads",
            "voice_states",
            "presences",
            "joined_at",
            "large",
            "member_count",
            "stage_instances",
            "guild_scheduled_events",
            "soundboard_sounds",
            "lazy",
        ):
            payload.pop(key, None)
        return _json_response(payload)

    async def _h_guild_channels(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json_response([c.to_payload() for c in self._guild_for(m).channels.values()])

    async def _h_guild_roles(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json_response([r.to_payload() for r in self._guild_for(m).roles.values()])

    async def _h_guild_members(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        members = sorted(self._guild_for(m).members.values(), key=lambda x: x.id)
        after = int(rec.query.get("after", 0))
        limit = int(rec.query.get("limit", 1))
        return _json_response([x.to_payload() for x in members if x.id > after][:limit])

    async def _h_guild_member(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        member = self._guild_for(m).members.get(int(m["uid"]))
        if member is None:
            raise HTTPError(404, 10007, "Unknown Member")
        return _json_response(member.to_payload())

    # ------------------------------------------------------------------------------------------------------
    # attachments (the fake's CDN)
    async def _h_attachment(self, aid: int, rec: RecordedRequest) -> web.Response:
        att = self._attachments.get(aid)
        if att is None:
            return web.Response(status=404, text="Not Found")
        if not self._cdn_url_valid(att.url, rec.query):
            return web.Response(status=404, text="This content is no longer available.")
        if att.serve_delay:
            await asyncio.sleep(att.serve_delay)
        ctype = att.served_content_type or att.content_type or "application/octet-stream"
        return web.Response(body=att.data, headers={"Content-Type": ctype})

    # ------------------------------------------------------------------------------------------------------
    # interaction callbacks and webhooks
    async def _h_callback(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        loop = asyncio.get_running_loop()
        it = self._interactions_by_token.get(m["token"])
        payload = rec.json if isinstance(rec.json, dict) else {}
        cb_type = int(payload.get("type") or 0)
        data = payload.get("data") or {}
        with_response = _truthy(rec.query.get("with_response"))
        if it is None or it.id != int(m["iid"]):
            raise HTTPError(404, 10062, "Unknown interaction")
        record = FakeCallback(cb_type, data, [], 0, with_response=with_response)
        try:
            response = await self._callback(it, record, rec, loop.time())
        except HTTPError as exc:
            record.status = exc.status
            record.error = exc.body
            it.callback_attempts.append(record)
            raise
        record.status = response.status
        it.callback_attempts.append(record)
        return response

    async def _callback(
        self, it: FakeInteraction, record: FakeCallback, rec: RecordedRequest, now: float
    ) -> web.Response:
        if it.acked:
            raise HTTPError(400, 40060, "Interaction has already been acknowledged.")
        if it.dead or it.expired or now - it.created_at > self.interaction_deadline:
            it.dead = True
            raise HTTPError(404, 10062, "Unknown interaction")
        cb_type, data, files = record.type, record.data, rec.files
        component_like = it.type in (MESSAGE_COMPONENT, MODAL_SUBMIT) and it.source_message is not None
        msg: FakeMessage | None = None
        if cb_type in (CB_MESSAGE, CB_DEFERRED_MESSAGE):
            if it.type == AUTOCOMPLETE:
                raise _invalid_response_type()
            flags = int(data.get("flags") or 0)
            if cb_type == CB_MESSAGE:
                msg = self._message_from_payload(
                    data,
                    files,
                    it.channel_id,
                    it.guild_id,
                    flags_mask=FLAG_EPHEMERAL
                    | FLAG_SUPPRESS_EMBEDS
                    | FLAG_SUPPRESS_NOTIFICATIONS
                    | (1 << 15),
                    source="interaction",
                )
            else:
                msg = FakeMessage(
                    self._ids.next(),
                    it.channel_id,
                    it.guild_id,
                    self.bot_user,
                    flags=FLAG_LOADING | (flags & FLAG_EPHEMERAL),
                    source="interaction",
                    payload=data,
                )
            self._decorate_interaction_message(msg, it)
            it.original_message = msg
            record.attachments = list(msg.attachments)
            await self._store_message(msg)
        elif cb_type in (CB_DEFERRED_UPDATE, CB_UPDATE):
            if not component_like:
                raise _invalid_response_type()
            assert it.source_message is not None
            msg = self._messages.get(it.source_message.id, it.source_message)
            if cb_type == CB_UPDATE:
                self._apply_edit(msg, data, files, "callback")
                record.attachments = list(msg.edits[-1].files)
                await self._echo_update(msg)
            it.original_message = msg
        elif cb_type == CB_AUTOCOMPLETE:
            if it.type != AUTOCOMPLETE:
                raise _invalid_response_type()
            error = validation.check_choices(list(data.get("choices") or []))
            if error is not None:
                raise HTTPError(400, 50035, "Invalid Form Body", errors=error["errors"])
        elif cb_type == CB_MODAL:
            if it.type in (AUTOCOMPLETE, MODAL_SUBMIT):
                raise _invalid_response_type()
            error = validation.check_modal(data)
            if error is not None:
                raise HTTPError(400, 50035, "Invalid Form Body", errors=error["errors"])
        else:
            raise HTTPError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "type": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_CHOICES",
                                "message": "Value must be one of (1, 4, 5, 6, 7, 8, 9, 10, 12).",
                            }
                        ]
                    }
                },
            )
        it.acked = True
        it.callback_record = record
        self._notify()
        if not record.with_response:
            return web.Response(status=204)
        body: dict[str, Any] = {
            "interaction": {
                "id": str(it.id),
                "type": it.type,
                "response_message_loading": cb_type == CB_DEFERRED_MESSAGE,
                "response_message_ephemeral": bool(msg and msg.ephemeral),
            }
        }
        if msg is not None:
            body["interaction"]["response_message_id"] = str(msg.id)
        if cb_type in (CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_UPDATE) and msg is not None:
            body["resource"] = {"type": cb_type, "message": msg.to_payload(self._resolve_reference)}
        else:
            body["resource"] = {"type": cb_type}
        return _json_response(body)

    def _decorate_interaction_message(self, msg: FakeMessage, it: FakeInteraction) -> None:
        msg.webhook_id = self.application_id
        msg.application_id = self.application_id
        msg.interaction = it
        data = it.data
        if it.type == APPLICATION_COMMAND:
            msg.type = 20 if int(data.get("type", 1)) == 1 else 23
        meta: dict[str, Any] = {
            "id": str(it.id),
            "type": it.type,
            "user": it.member.user.to_payload(),
            "authorizing_integration_owners": {"0": str(it.guild_id)},
        }
        if it.type == APPLICATION_COMMAND:
            meta["name"] = it.name
            meta["command_type"] = int(data.get("type", 1))
        if it.source_message is not None:
            meta["interacted_message_id"] = str(it.source_message.id)
        if it.original_message is not None and it.original_message is not msg:
            meta["original_response_message_id"] = str(it.original_message.id)
        msg.interaction_metadata = meta

    def _webhook_interaction(self, m: re.Match[str]) -> FakeInteraction:
        if int(m["app"]) != self.application_id:
            raise HTTPError(404, 10015, "Unknown Webhook")
        it = self._interactions_by_token.get(m["token"])
        if it is None:
            raise HTTPError(401, 50027, "Invalid Webhook Token")
        # The token lives 15 minutes from the interaction's creation (its snowflake), not from its delivery.
        age = time.time() - snowflake_time(it.id).timestamp()
        if it.expired or age > self.interaction_ttl:
            raise HTTPError(401, 50027, "Invalid Webhook Token")
        if it.dead or not it.acked:
            raise HTTPError(404, 10015, "Unknown Webhook")
        return it

    def _webhook_message(self, it: FakeInteraction, mid: str) -> FakeMessage:
        if mid == "@original":
            msg = it.original_message
            if msg is None or msg.deleted or it.original_deleted:
                raise HTTPError(404, 10008, "Unknown Message")
            return msg
        target = int(mid)
        for msg in [it.original_message, *it.followups]:
            if msg is not None and msg.id == target and not msg.deleted:
                return msg
        raise HTTPError(404, 10008, "Unknown Message")

    async def _h_followup(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        it = self._webhook_interaction(m)
        payload = rec.json if isinstance(rec.json, dict) else {}
        original = it.original_message
        if (
            original is not None
            and original.loading
            and not original.deleted
            and not it.original_deleted
            and not it.edits
            and not it.followups
        ):
            # Discord: the first followup after a "thinking" defer replaces the loading message.
            self._apply_edit(original, payload, rec.files, "webhook")
            it.followups.append(original)
            await self._echo_update(original)
            msg = original
        else:
            msg = self._message_from_payload(
                payload,
                rec.files,
                it.channel_id,
                it.guild_id,
                flags_mask=FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | (1 << 15),
                source="followup",
            )
            self._decorate_interaction_message(msg, it)
            it.followups.append(msg)
            await self._store_message(msg)
        self._notify()
        if not _truthy(rec.query.get("wait")):
            return web.Response(status=204)
        return _json_response(msg.to_payload(self._resolve_reference))

    async def _h_webhook_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        it = self._webhook_interaction(m)
        return _json_response(self._webhook_message(it, m["mid"]).to_payload(self._resolve_reference))

    async def _h_webhook_patch(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        it = self._webhook_interaction(m)
        msg = self._webhook_message(it, m["mid"])
        payload = rec.json if isinstance(rec.json, dict) else {}
        self._apply_edit(msg, payload, rec.files, "webhook")
        if msg is it.original_message:
            it.edits.append(payload)
        await self._echo_update(msg)
        self._notify()
        return _json_response(msg.to_payload(self._resolve_reference))

    async def _h_webhook_delete(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        it = self._webhook_interaction(m)
        msg = self._webhook_message(it, m["mid"])
        msg.deleted = True
        if msg is it.original_message:
            it.original_deleted = True
        await self._echo_delete(msg)
        self._notify()
        return web.Response(status=204)

    # ------------------------------------------------------------------------------------------------------
    # gateway
    def _guilds_for_shard(self, shard_id: int, shard_count: int) -> list[FakeGuild]:
        return [g for g in self.guilds.values() if (g.id >> 22) % shard_count == shard_id]

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = GatewayConnection(ws, request.query.get("compress"))
        self._connections.add(conn)
        self._notify()
        try:
            if request.query.get("encoding", "json") != "json":
                await conn.close(4002)
                return ws
            await conn.send(
                {
                    "op": OP_HELLO,
                    "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fakediscord"]},
                    "s": None,
                    "t": None,
                }
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT or msg.type == WSMsgType.BINARY:
                    payload = json.loads(msg.data)
                else:
                    break
                conn.received.append(payload)
                self.gateway_payloads.append(payload)
                await self._on_gateway_payload(conn, payload)
                self._notify()
        except Exception as exc:  # pragma: no cover - keep the fake alive, but loud
            if not isinstance(exc, ConnectionError | asyncio.CancelledError):
                self.internal_errors.append(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            conn.closed = True
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            self._connections.discard(conn)
            self._notify()
        return ws

    async def _on_gateway_payload(self, conn: GatewayConnection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        d = payload.get("d")
        if op == OP_HEARTBEAT:
            conn.heartbeats += 1
            self._spawn(self._ack_heartbeat(conn))
        elif op == OP_IDENTIFY:
            await self._identify(conn, d or {})
        elif op == OP_RESUME:
            await self._resume(conn, d or {})
        elif op == OP_REQUEST_MEMBERS:
            await self._request_members(conn, d or {})
        elif op in (OP_PRESENCE, OP_VOICE):
            return
        else:
            await conn.close(4001)  # Unknown opcode

    async def _ack_heartbeat(self, conn: GatewayConnection) -> None:
        await asyncio.sleep(self.heartbeat_ack_delay)
        await conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})

    async def _identify(self, conn: GatewayConnection, d: dict[str, Any]) -> None:
        if d.get("token") != self.token and d.get("token") != f"Bot {self.token}":
            await conn.close(4004)  # Authentication failed
            return
        if conn.session is not None:
            await conn.close(4005)  # Already authenticated
            return
        shard_id, shard_count = d.get("shard") or [0, 1]
        if not 0 <= shard_id < shard_count:
            await conn.close(4010)  # Invalid shard
            return
        session = GatewaySession(
            secrets.token_hex(16),
            shard_id,
            shard_count,
            int(d.get("intents") or 0),
            index=len(self.sessions) + 1,
        )
        session.conn = conn
        conn.session = session
        self.sessions.append(session)
        self._sessions_by_id[session.session_id] = session
        previous = self._sessions_by_shard.get(shard_id)
        if previous is not None:
            previous.invalidated = True
        self._sessions_by_shard[shard_id] = session
        if self._shard_count != shard_count:
            self._shard_count = shard_count
            for sid, s in list(self._sessions_by_shard.items()):
                if s.shard_count != shard_count:
                    del self._sessions_by_shard[sid]
        guilds = self._guilds_for_shard(shard_id, shard_count)
        session.guild_ids = [g.id for g in guilds]
        await session.dispatch(
            "READY",
            {
                "v": 10,
                "user": self._bot_user_payload(),
                "user_settings": {},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": self.gateway_url.rstrip("/"),
                "shard": [shard_id, shard_count],
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": ["fake"],
                "auth_session_id_hash": "",
                "_trace": ["fakediscord"],
            },
        )
        for g in guilds:
            await session.dispatch(
                "GUILD_CREATE", g.to_payload(all_members=bool(session.intents & INTENT_GUILD_PRESENCES))
            )
        session.ready = True
        self._notify()

    async def _resume(self, conn: GatewayConnection, d: dict[str, Any]) -> None:
        session = self._sessions_by_id.get(d.get("session_id") or "")
        if session is None or session.invalidated or d.get("token") not in (self.token, f"Bot {self.token}"):
            await conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        old = session.conn
        if old is not None and old is not conn:
            old.session = None
            self._spawn(old.close(4009))
        session.conn = conn
        conn.session = session
        session.resumes += 1
        await session.replay_after(int(d.get("seq") or 0))
        await session.dispatch("RESUMED", {"_trace": ["fakediscord"]})
        self._notify()

    async def _request_members(self, conn: GatewayConnection, d: dict[str, Any]) -> None:
        if conn.session is None:
            return
        guild = self.guilds.get(int(d.get("guild_id") or 0))
        if guild is None:
            return
        query = (d.get("query") or "").lower()
        user_ids = {int(u) for u in d.get("user_ids") or []}
        members = [
            m
            for m in guild.members.values()
            if (not user_ids or m.id in user_ids) and (not query or m.name.lower().startswith(query))
        ]
        limit = int(d.get("limit") or 0)
        if limit:
            members = members[:limit]
        data: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [m.to_payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if d.get("nonce") is not None:
            data["nonce"] = d["nonce"]
        await conn.session.dispatch("GUILD_MEMBERS_CHUNK", data)
