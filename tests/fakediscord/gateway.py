"""Gateway side of the fake: connections (one websocket each) and sessions (one per IDENTIFY, resumable)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

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
