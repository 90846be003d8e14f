"""Gateway side of the fake: connections (one websocket each), sessions (one per IDENTIFY, resumable), and
:class:`Gateway`: the websocket handler (HELLO, IDENTIFY, RESUME, heartbeats, member requests), dispatching
events to the shard that owns a guild, the test's gateway controls, and ``/gateway`` on REST."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .models import FakeGuild
from .rest import RecordedRequest, Route, json_response, route

if TYPE_CHECKING:
    from .state import FakeState
    from .users import Users

try:  # discord.py asks for zstd-stream when it can decompress it; answer in kind when we can compress it.
    import zstandard as _zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _zstd = None

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE = 3
OP_VOICE = 4
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12


class GatewayConnection:
    """One websocket; frames compressed as the client asked in the URL query (zlib-stream, zstd-stream)."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.requested_compress = compress
        self.compress: str | None = None
        self._zlib: Any = None
        self._zstd: Any = None
        if compress == "zlib-stream":
            self.compress = compress
            self._zlib = zlib.compressobj()
        elif compress == "zstd-stream" and _zstd is not None:
            self.compress = compress
            self._zstd = _zstd.ZstdCompressor().compressobj()
        self._lock = asyncio.Lock()
        self.session: GatewaySession | None = None
        self.received: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.closed = False

    async def send(self, obj: dict[str, Any]) -> bool:
        """Send one payload; False if the socket is gone."""
        data = json.dumps(obj, separators=(",", ":")).encode()
        async with self._lock:
            if self.closed or self.ws.closed:
                return False
            try:
                if self._zlib is not None:
                    await self.ws.send_bytes(self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH))
                elif self._zstd is not None:
                    frame = self._zstd.compress(data) + self._zstd.flush(_zstd.COMPRESSOBJ_FLUSH_BLOCK)
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(data.decode())
            except (ConnectionError, RuntimeError):
                return False
        return True

    async def close(self, code: int) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code), timeout=2)


@dataclass(eq=False)
class GatewaySession:
    """A gateway session (created by IDENTIFY). Survives its connection so RESUME can replay missed events."""

    session_id: str
    shard_id: int
    shard_count: int
    intents: int
    index: int  # 1-based identify counter across the fake's lifetime
    seq: int = 0
    buffer: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list, repr=False)
    conn: GatewayConnection | None = field(default=None, repr=False)
    ready: bool = False
    guild_ids: list[int] = field(default_factory=list)
    resumes: int = 0
    invalidated: bool = False
    events: list[str] = field(default_factory=list, repr=False)

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed and not self.conn.ws.closed

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH (buffered for RESUME if the connection is gone)."""
        self.seq += 1
        self.buffer.append((self.seq, event, data))
        if len(self.buffer) > 2000:
            del self.buffer[:1000]
        self.events.append(event)
        if self.conn is not None:
            await self.conn.send({"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data})

    async def replay_after(self, seq: int) -> None:
        assert self.conn is not None
        for s, event, data in list(self.buffer):
            if s > seq:
                await self.conn.send({"op": OP_DISPATCH, "t": event, "s": s, "d": data})


class Gateway:
    def __init__(self, state: FakeState, users: Users) -> None:
        self.state = state
        self.users = users

    def routes(self) -> list[Route]:
        return [
            route("GET", r"/gateway", self._h_gateway),
            route("GET", r"/gateway/bot", self._h_gateway_bot),
        ]

    async def _h_gateway(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response({"url": self.state.gateway_url.rstrip("/")})

    async def _h_gateway_bot(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(
            {
                "url": self.state.gateway_url.rstrip("/"),
                "shards": self.state.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000 - len(self.state.sessions),
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    def connected_shards(self) -> list[int]:
        return sorted(s.shard_id for s in self.state._sessions_by_shard.values() if s.connected)

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
            count = shard_count or self.state._shard_count
            if not count:
                return None
            out = []
            for i in range(count):
                s = self.state._sessions_by_shard.get(i)
                if s is None or not s.ready or not s.connected or s.index <= since or s.shard_count != count:
                    return None
                out.append(s)
            return out

        return await self.state.wait_for(check, timeout, what="the bot to identify and receive its guilds")

    async def wait_disconnected(self, timeout: float = 10.0) -> None:
        """Wait until no gateway connection is open (e.g. after killing the bot process)."""
        await self.state.wait_for(
            lambda: not any(not c.closed and not c.ws.closed for c in self.state._connections) or None,
            timeout,
            what="all gateway connections to close",
        )

    async def drop_shard(self, shard_id: int, code: int = 4000) -> None:
        """Close a shard's websocket with ``code`` (4000: the client RESUMEs)."""
        session = self.state._sessions_by_shard[shard_id]
        if session.conn is not None:
            conn = session.conn
            self.state._spawn(conn.close(code))

    async def request_reconnect(self, shard_id: int) -> None:
        """Send op 7 RECONNECT (the client closes and RESUMEs)."""
        session = self.state._sessions_by_shard[shard_id]
        if session.conn is not None:
            await session.conn.send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})

    async def invalidate_session(self, shard_id: int, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION (``resumable=False``: the client re-IDENTIFYs)."""
        session = self.state._sessions_by_shard[shard_id]
        if not resumable:
            session.invalidated = True
        if session.conn is not None:
            await session.conn.send({"op": OP_INVALID_SESSION, "d": resumable, "s": None, "t": None})

    def live_session_for(self, guild_id: int | None) -> GatewaySession | None:
        count = self.state._shard_count
        if not count:
            return None
        shard = (guild_id >> 22) % count if guild_id else 0
        s = self.state._sessions_by_shard.get(shard)
        if s is None or not s.ready or not s.connected or s.invalidated:
            return None
        return s

    async def dispatch_guild_event(
        self,
        guild_id: int | None,
        event: str,
        data: dict[str, Any],
        *,
        shard_guild: int | None = None,
        intent: int | None = None,
    ) -> None:
        count = self.state._shard_count
        if not count:
            return
        shard = ((shard_guild or guild_id or 0) >> 22) % count
        s = self.state._sessions_by_shard.get(shard)
        if s is None or s.invalidated:
            return
        if intent is not None and not s.intents & intent:
            return
        await s.dispatch(event, data)

    def _guilds_for_shard(self, shard_id: int, shard_count: int) -> list[FakeGuild]:
        return [g for g in self.state.guilds.values() if (g.id >> 22) % shard_count == shard_id]

    async def ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = GatewayConnection(ws, request.query.get("compress"))
        self.state._connections.add(conn)
        self.state._notify()
        try:
            if request.query.get("encoding", "json") != "json":
                await conn.close(4002)
                return ws
            await conn.send(
                {
                    "op": OP_HELLO,
                    "d": {"heartbeat_interval": self.state.heartbeat_interval_ms, "_trace": ["fakediscord"]},
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
                self.state.gateway_payloads.append(payload)
                await self._on_gateway_payload(conn, payload)
                self.state._notify()
        except Exception as exc:  # pragma: no cover - keep the fake alive, but loud
            if not isinstance(exc, ConnectionError | asyncio.CancelledError):
                self.state.internal_errors.append(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            conn.closed = True
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            self.state._connections.discard(conn)
            self.state._notify()
        return ws

    async def _on_gateway_payload(self, conn: GatewayConnection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        d = payload.get("d")
        if op == OP_HEARTBEAT:
            conn.heartbeats += 1
            self.state._spawn(self._ack_heartbeat(conn))
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
        await asyncio.sleep(self.state.heartbeat_ack_delay)
        await conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})

    async def _identify(self, conn: GatewayConnection, d: dict[str, Any]) -> None:
        if d.get("token") != self.state.token and d.get("token") != f"Bot {self.state.token}":
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
            index=len(self.state.sessions) + 1,
        )
        session.conn = conn
        conn.session = session
        self.state.sessions.append(session)
        self.state._sessions_by_id[session.session_id] = session
        previous = self.state._sessions_by_shard.get(shard_id)
        if previous is not None:
            previous.invalidated = True
        self.state._sessions_by_shard[shard_id] = session
        if self.state._shard_count != shard_count:
            self.state._shard_count = shard_count
            for sid, s in list(self.state._sessions_by_shard.items()):
                if s.shard_count != shard_count:
                    del self.state._sessions_by_shard[sid]
        guilds = self._guilds_for_shard(shard_id, shard_count)
        session.guild_ids = [g.id for g in guilds]
        await session.dispatch(
            "READY",
            {
                "v": 10,
                "user": self.users.bot_user_payload(),
                "user_settings": {},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": self.state.gateway_url.rstrip("/"),
                "shard": [shard_id, shard_count],
                "application": {"id": str(self.state.application_id), "flags": 0},
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
        self.state._notify()

    async def _resume(self, conn: GatewayConnection, d: dict[str, Any]) -> None:
        session = self.state._sessions_by_id.get(d.get("session_id") or "")
        if (
            session is None
            or session.invalidated
            or d.get("token") not in (self.state.token, f"Bot {self.state.token}")
        ):
            await conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        old = session.conn
        if old is not None and old is not conn:
            old.session = None
            self.state._spawn(old.close(4009))
        session.conn = conn
        conn.session = session
        session.resumes += 1
        await session.replay_after(int(d.get("seq") or 0))
        await session.dispatch("RESUMED", {"_trace": ["fakediscord"]})
        self.state._notify()

    async def _request_members(self, conn: GatewayConnection, d: dict[str, Any]) -> None:
        if conn.session is None:
            return
        guild = self.state.guilds.get(int(d.get("guild_id") or 0))
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
