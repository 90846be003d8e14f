"""The fake Discord server: :class:`FakeDiscord` composes the resources (see the package doc for which module
holds what), runs every HTTP request through one pipeline (record, injected faults, rate limits, the spec
check, the route's handler, observers), serves the gateway and the CDN on the same port, and points
discord.py at itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from . import install as _install
from .cdn import Cdn
from .channels import Channels
from .commands import Commands
from .faults import Faults
from .gateway import Gateway
from .guilds import Guilds
from .interactions import Interactions
from .messages import Messages
from .openapi import ValidatorPool, route_index
from .ratelimits import RateLimiter
from .responses import Responses
from .rest import (
    JSON,
    HTTPError,
    InvalidBody,
    RecordedRequest,
    Route,
    error_response,
    json_response,
    parse_body,
)
from .state import FakeState
from .users import Users


class FakeDiscord(FakeState):
    """A local fake Discord (REST + gateway + CDN) for the real discord.py client; see the package doc.

    It is the shared state (:class:`~.state.FakeState`) that each resource holds; its test API is the
    resources' own methods, bound here by name."""

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
        super().__init__(
            bot_name=bot_name,
            token=token,
            recommended_shards=recommended_shards,
            interaction_deadline=interaction_deadline,
            interaction_ttl=interaction_ttl,
            heartbeat_interval_ms=heartbeat_interval_ms,
            heartbeat_ack_delay=heartbeat_ack_delay,
            strict_commands=strict_commands,
            echo_message_events=echo_message_events,
        )
        self._limiter = RateLimiter(self.rate_limits)
        self._runner: web.AppRunner | None = None
        self._installed: tuple[Any, Any, Any] | None = None
        self._site_dir: Path | None = None

        # Each resource holds this state and the resources it calls (built in that order).
        users = Users(self)
        gateway = Gateway(self, users)
        cdn = Cdn(self)
        channels = Channels(self, gateway)
        guilds = Guilds(self, gateway)
        messages = Messages(self, gateway, cdn, channels)
        commands = Commands(self)
        responses = Responses(self, messages)
        interactions = Interactions(self, commands, gateway, messages)
        self._gateway, self._cdn, self._faults = gateway, cdn, Faults()
        self._routes: list[Route] = [
            r
            for resource in (users, gateway, cdn, commands, responses, channels, messages, guilds)
            for r in resource.routes()
        ]

        # The test API, by resource.
        self.add_guild = guilds.add_guild
        self.setup_default = guilds.setup_default
        self.join_guild = guilds.join_guild
        self.remove_guild = guilds.remove_guild
        self.delete_channel = channels.delete_channel
        self.deny_send = channels.deny_send
        self.allow_send = channels.allow_send
        self.dm_channel = channels.dm_channel
        self.open_dm = channels.open_dm
        self.set_bot_overwrite = channels.set_bot_overwrite
        self.register_attachment = cdn.register_attachment
        self.signed_url = cdn.signed_url
        self.expire_cdn_urls = cdn.expire_cdn_urls
        self.messages = messages.messages
        self.message = messages.message
        self.wait_message = messages.wait_message
        self.user_message = messages.user_message
        self.commands = commands.commands
        self.command = commands.command
        self.wait_commands_synced = commands.wait_commands_synced
        self.slash = interactions.slash
        self.dm_slash = interactions.dm_slash
        self.user_install_slash = interactions.user_install_slash
        self.autocomplete = interactions.autocomplete
        self.message_command = interactions.message_command
        self.user_command = interactions.user_command
        self.press_button = interactions.press_button
        self.select = interactions.select
        self.submit_modal = interactions.submit_modal
        self.expire_interaction = interactions.expire_interaction
        self.connected_shards = gateway.connected_shards
        self.wait_ready = gateway.wait_ready
        self.wait_disconnected = gateway.wait_disconnected
        self.drop_shard = gateway.drop_shard
        self.request_reconnect = gateway.request_reconnect
        self.invalidate_session = gateway.invalidate_session
        self.fail_next = self._faults.fail_next
        self.hold_next = self._faults.hold_next
        self._faults.notify = self._notify

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
    # the request pipeline: record, injected faults, rate limits, the spec, the route's handler, observers
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.rstrip("/") == "/gateway" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._gateway.ws_handler(request)
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
            await parse_body(request, rec)
            await self._faults.hold_for(rec)
            fault = self._faults.fault_for(rec)
            if fault is None and api:
                fault, limit_headers = self._rate_limit(rec)
            if fault is None and api:
                fault = await self._check_spec(rec)
            response = fault if fault is not None else await self._route(request, rec, api)
        except HTTPError as exc:
            if exc.status == 400 and exc.body.get("code") in (50035, 50006):
                self.invalid_bodies.append(InvalidBody(rec, "rules", exc.body))
            response = json_response(exc.body, status=exc.status)
        except Exception as exc:  # a bug in the fake: make it loud
            self.internal_errors.append(exc)
            response = error_response(503, 0, f"fake internal error: {exc!r}")
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
        return json_response(verdict.refused, status=429, headers=verdict.headers), {}

    def invalid_request_count(self) -> int:
        """401/403/429 answers in the invalid-request window (what Discord's 10,000 per 10 minutes counts)."""
        return self._limiter.invalid_in_window()

    async def _check_spec(self, rec: RecordedRequest) -> web.Response | None:
        """Hold the request against Discord's OpenAPI spec: its route must exist there, and its JSON body (or
        ``payload_json``) must fit the route's request schema (``ValidatorPool.judge``)."""
        template = route_index().match(rec.method, rec.path)
        if template is None:
            self.unspecced_routes.append(rec)
            return None  # the handler still answers (or 404s): the test fails at teardown either way
        if rec.json is None:
            return None
        verdict, seconds = await ValidatorPool.judge(template, rec.method, rec.json)
        self.spec_check_seconds.append(seconds)
        if verdict is None:
            return None
        self.invalid_bodies.append(InvalidBody(rec, "spec", verdict))
        return json_response(verdict, status=400)

    async def _route(self, request: web.Request, rec: RecordedRequest, api: bool) -> web.StreamResponse:
        if not api:
            m = re.fullmatch(r"/attachments/(?P<aid>\d+)/(?P<filename>[^/]+)", rec.path)
            if rec.method in ("GET", "HEAD") and m:
                return await self._cdn.serve(int(m["aid"]), rec)
            return self._unknown(rec)
        for method, pattern, handler in self._routes:
            if method != rec.method:
                continue
            m = pattern.match(rec.path)
            if m is None:
                continue
            public = rec.path.startswith(("/webhooks/", "/interactions/")) or rec.path == "/gateway"
            if not public and request.headers.get("Authorization") != f"Bot {self.token}":
                return error_response(401, 0, "401: Unauthorized")
            return await handler(rec, m)
        return self._unknown(rec)

    def _unknown(self, rec: RecordedRequest) -> web.Response:
        self.unknown_routes.append(rec)
        return error_response(404, 0, "404: Not Found")
