"""REST plumbing every resource of the fake shares: the recorded request, Discord's error answers, JSON
responses, and route patterns (each resource lists its routes; :mod:`.server` runs them)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

JSON = "application/json"


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


class HTTPError(Exception):
    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code, **extra}


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # discord.py parses JSON only when Content-Type is exactly application/json (no charset)
    h = {"Content-Type": JSON}
    if headers:
        h.update(headers)
    return web.Response(body=json.dumps(data).encode(), status=status, headers=h)


def error_response(status: int, code: int, message: str, **extra: Any) -> web.Response:
    return json_response({"message": message, "code": code, **extra}, status=status)


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


async def parse_body(request: web.Request, rec: RecordedRequest) -> None:
    """Fill ``rec.json`` (a JSON body, or a multipart ``payload_json``) and ``rec.files``."""
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


Handler = Callable[[RecordedRequest, "re.Match[str]"], Awaitable[web.StreamResponse]]
#: one route: method, the anchored pattern of the path relative to ``/api/v10``, its handler
Route = tuple[str, "re.Pattern[str]", Handler]

APP = r"(?P<app>\d+)"


def snow(name: str) -> str:
    """A path segment holding a snowflake, captured as ``name``."""
    return rf"(?P<{name}>\d+)"


def route(method: str, pattern: str, handler: Handler) -> Route:
    return (method, re.compile("^" + pattern + "$"), handler)
