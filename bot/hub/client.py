"""`HubClient`: the GPT Image Hub API over one aiohttp session.

Retry rules (the point of this module):

* reads (GET) are retried with exponential backoff and jitter on connection errors, timeouts, 5xx
  and 429 (honouring a capped `Retry-After`); when retries run out → `HubUnavailable`;
* a submission (POST) is never retried once a request may have been sent: a dropped connection, a
  timeout, an unreadable success body or a 5xx without a documented error code → `OutcomeUnknown`.
  The only POST retry is a connection refused before anything was sent (`ClientConnectorError`);
  when those retries run out → `HubUnavailable` (nothing was sent, nothing charged).

Image downloads (`download`) fetch URLs from the hub's answers: untrusted. They follow at most
`MAX_REDIRECTS` redirects, checking every hop, and with an `AddressPolicy` (bot/hub/netguard.py)
never reach a non-public address.

Every attempt has a total timeout; a submission's grows with the size of its body (references), at
`UPLOAD_RATE`, so a large upload over a slow link is not cut off into `OutcomeUnknown`. The API key
is sent only to the hub (never with `download`) and never appears in logs, errors or `repr`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
from pydantic import BaseModel, ValidationError

from bot import __version__
from bot.hub.errors import (
    DownloadError,
    DownloadTooLarge,
    HubError,
    HubUnavailable,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    error_class_for,
    redact,
)
from bot.hub.netguard import AddressPolicy, UnsafeAddress, UnsafeAddressOSError
from bot.hub.types import Credits, Generation, HubModel, Reference

log = logging.getLogger(__name__)

_MAX_BODY = 8 * 1024 * 1024
#: Bytes per second a submission's body is allowed to take on top of `timeout` (a slow uplink).
UPLOAD_RATE = 256 * 1024
_CHUNK = 64 * 1024
#: Redirects an image download follows (each hop checked like the first URL).
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_STATUS_FALLBACK: dict[int, type[HubError]] = {400: InvalidRequest, 402: InsufficientCredits, 404: NotFound}

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    content_type: str
    retry_after: str | None


class _BodyTooLarge(Exception):
    pass


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def mask_key(api_key: str | None) -> str:
    """A display form of a key that does not reveal it (`gih_live_…wxyz`)."""
    if not api_key:
        return "None"
    return f"gih_live_…{api_key[-4:]}" if len(api_key) >= 16 else "***"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_details(payload: Any) -> tuple[str | None, str | None]:
    """(code, message) from an error body such as {"error": {"message": ..., "code": ...}}."""
    if not isinstance(payload, dict):
        return None, None
    code: Any = None
    message: Any = None
    err = payload.get("error")
    if isinstance(err, dict):
        code = err.get("code") or err.get("type")
        message = err.get("message") or err.get("detail")
    elif isinstance(err, str):
        message = err
    code = code or payload.get("code")
    message = message or payload.get("message") or payload.get("detail")
    return (str(code) if code else None), (str(message) if message else None)


def _safe_filename(name: str) -> str:
    """A filename without control characters (they would break the part's headers)."""
    cleaned = "".join("_" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in name).strip()
    return cleaned or "reference"


def _unwrap(payload: Any, marker: str) -> Any:
    """The object itself, or its `data` object when the hub wraps it ({"data": {...}})."""
    if isinstance(payload, dict) and marker not in payload and isinstance(payload.get("data"), dict):
        return payload["data"]
    return payload


class HubClient:
    """Async client of the GPT Image Hub API; use as `async with HubClient(url, key) as hub:`.

    A `session` passed in is shared and never closed here; otherwise the client owns one.
    `timeout` bounds each HTTP attempt; `retries` is the number of extra attempts where retrying is
    safe; `backoff` / `max_backoff` / `max_retry_after` tune the waits between them (seconds).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        max_retry_after: float = 30.0,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._address_policy = address_policy

    @property
    def base_url(self) -> str:
        return self._base_url

    def __repr__(self) -> str:
        return f"HubClient(base_url={self._base_url!r}, api_key={mask_key(self._api_key)!r})"

    async def __aenter__(self) -> HubClient:
        self._get_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it (a shared session is left open)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    # ------------------------------------------------------------------ public API

    async def list_models(self) -> list[HubModel]:
        """The hub's image models (no key needed). Entries that cannot be understood are skipped."""
        payload = await self._get("/api/v1/models", auth=False)
        items: Any = payload
        if isinstance(payload, dict):
            items = next((payload[k] for k in ("data", "models") if isinstance(payload.get(k), list)), None)
            if items is None and isinstance(payload.get("data"), dict):
                items = payload["data"].get("models")
        if not isinstance(items, list):
            raise HubError("the model list has an unexpected shape", status=200, code="bad_response")
        models: list[HubModel] = []
        for item in items:
            try:
                models.append(HubModel.model_validate(item))
            except ValidationError:
                log.warning("skipping a model entry the bot does not understand")
        return models

    async def get_credits(self) -> Credits:
        """The balance of the key's owner."""
        payload = await self._get("/api/v1/credits", auth=True)
        credits = self._model(Credits, _unwrap(payload, "credits"), "credit balance")
        if credits.credits is None:
            raise HubError("the hub's credit balance has no credits", status=200, code="bad_response")
        return credits

    async def get_generation(self, generation_id: str) -> Generation:
        """A generation by id (owner only); a failed generation is returned, not raised."""
        if not generation_id:
            raise ValueError("generation_id must not be empty")
        payload = await self._get(f"/api/v1/generations/{quote(generation_id, safe='')}", auth=True)
        return self._model(Generation, _unwrap(payload, "id"), "generation")

    async def generate(
        self,
        *,
        model: str,
        prompt: str,
        size: str | None = None,
        quality: str | None = None,
        n: int = 1,
        references: Sequence[Reference] = (),
        async_: bool = True,
    ) -> Generation:
        """Submit a generation. With `async_` (default) the hub answers at once (queued + poll_url).

        Raises a definite `HubError` subclass when the hub refused it (nothing stays charged),
        `HubUnavailable` when nothing could be sent, and `OutcomeUnknown` when it may have been taken.
        """
        fields: dict[str, Any] = {"model": model, "prompt": prompt, "size": size, "quality": quality, "n": n}
        fields = {k: v for k, v in fields.items() if v is not None}
        refs = tuple(references)

        def build_body() -> dict[str, Any]:
            if not refs:
                return {"json": {**fields, "async": async_}}
            # Filenames go out as UTF-8 (as browsers send them), not percent-encoded.
            form = aiohttp.FormData(quote_fields=False)
            for name, value in fields.items():
                form.add_field(name, str(value))
            form.add_field("async", "true" if async_ else "false")
            for ref in refs:
                form.add_field(
                    "reference_image",
                    ref.data,
                    filename=_safe_filename(ref.filename),
                    content_type=ref.content_type,
                )
            return {"data": form}

        upload = sum(len(ref.data) for ref in refs)
        answer = await self._post("/api/v1/images/generations", build_body, body_bytes=upload)
        return self._submission_result(answer)

    async def download(
        self,
        url: str,
        max_bytes: int,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - the contract's per-call total timeout
    ) -> bytes:
        """The bytes at `url` (an image URL from a generation), at most `max_bytes`.

        No Authorization header is sent. Redirects are followed one by one, at most
        `MAX_REDIRECTS`, each hop's URL checked like the first: http(s) only and, with an
        `address_policy`, never a non-public address (names are checked when the session's
        `GuardedResolver` resolves them). Raises `DownloadTooLarge` when the declared or streamed
        size passes `max_bytes`, `UnsafeAddress` for a refused address, `DownloadError` on an HTTP
        error, too many redirects, a timeout or a connection failure.
        """
        full = urljoin(self._base_url + "/", url)
        where = _where(full)
        session = self._get_session()
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            for _hop in range(MAX_REDIRECTS + 1):
                self._check_download_url(full)
                remaining = max(0.001, deadline - asyncio.get_running_loop().time())
                async with session.get(
                    full, timeout=aiohttp.ClientTimeout(total=remaining), allow_redirects=False
                ) as resp:
                    if resp.status in _REDIRECTS and resp.headers.get("Location"):
                        full = urljoin(full, resp.headers["Location"])
                        where = _where(full)
                        continue
                    return await self._read_capped(resp, where, max_bytes)
            raise DownloadError(f"image download from {where} redirected more than {MAX_REDIRECTS} times")
        except DownloadError:
            raise
        except TimeoutError:
            raise DownloadError(
                f"image download from {where} timed out after {timeout:g}s", code="download_timeout"
            ) from None
        except aiohttp.ClientError as exc:
            cause = exc.__cause__ or getattr(exc, "os_error", None)
            if isinstance(cause, UnsafeAddressOSError):
                raise UnsafeAddress(str(cause)) from None
            raise DownloadError(f"image download from {where} failed: {_describe(exc)}") from None

    def _check_download_url(self, url: str) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise DownloadError(f"refusing to download a non-http URL ({scheme or 'no scheme'})")
        if self._address_policy is not None:
            self._address_policy.check_url(url)

    @staticmethod
    async def _read_capped(resp: aiohttp.ClientResponse, where: str, max_bytes: int) -> bytes:
        if not 200 <= resp.status < 300:
            raise DownloadError(f"image download from {where} failed", status=resp.status)
        declared = resp.content_length
        if declared is not None and declared > max_bytes:
            raise DownloadTooLarge(
                f"image at {where} is {declared} bytes, over the {max_bytes}-byte limit", status=resp.status
            )
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            buf += chunk
            if len(buf) > max_bytes:
                raise DownloadTooLarge(
                    f"image at {where} is over the {max_bytes}-byte limit", status=resp.status
                )
        return bytes(buf)

    # ------------------------------------------------------------------ transport

    def _headers(self, auth: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"image-hub-bot/{__version__}"}
        if auth and self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _client_timeout(self, total: float | None = None) -> aiohttp.ClientTimeout:
        total = self._timeout if total is None else total
        return aiohttp.ClientTimeout(total=total, connect=min(self._timeout, 10.0))

    async def _attempt(
        self, method: str, path: str, *, auth: bool, body: dict[str, Any], total: float | None = None
    ) -> _Answer:
        session = self._get_session()
        timeout = self._client_timeout(total)
        async with session.request(
            method, self._base_url + path, headers=self._headers(auth), timeout=timeout, **body
        ) as resp:
            if resp.content_length is not None and resp.content_length > _MAX_BODY:
                raise _BodyTooLarge
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK):
                buf += chunk
                if len(buf) > _MAX_BODY:
                    raise _BodyTooLarge
            return _Answer(resp.status, bytes(buf), resp.content_type, resp.headers.get("Retry-After"))

    def _delay(self, attempt: int, retry_after: str | None = None) -> float:
        base = min(self._max_backoff, self._backoff * 2**attempt)
        delay = random.uniform(base / 2, base)
        if retry_after:
            seconds: float | None
            try:
                seconds = float(retry_after)
            except ValueError:
                try:
                    seconds = email.utils.parsedate_to_datetime(retry_after).timestamp() - time.time()
                except (TypeError, ValueError, IndexError):
                    seconds = None
            if seconds is not None:
                delay = max(delay, min(max(seconds, 0.0), self._max_retry_after))
        return delay

    async def _get(self, path: str, *, auth: bool) -> Any:
        """GET with retries; the parsed JSON of a 2xx answer, or the mapped error."""
        reason = ""
        last_status: int | None = None
        last_code: str | None = None
        for attempt in range(self._retries + 1):
            retry_after: str | None = None
            try:
                answer = await self._attempt("GET", path, auth=auth, body={})
            except _BodyTooLarge:
                raise HubError(f"GET {path}: the answer is too large", code="bad_response") from None
            except aiohttp.InvalidURL as exc:
                raise HubError(f"GET {path}: {_describe(exc)}", code="invalid_url") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                timed_out = isinstance(exc, TimeoutError)
                reason = f"timed out ({self._timeout:g}s)" if timed_out else _describe(exc)
                last_status, last_code = None, None
            else:
                if answer.status != 429 and answer.status < 500:
                    return self._read_answer(answer, f"GET {path}")
                last_status, retry_after = answer.status, answer.retry_after
                last_code = _error_details(self._json_or_none(answer.body))[0]
                reason = f"HTTP {answer.status}"
            if attempt < self._retries:
                delay = self._delay(attempt, retry_after)
                log.warning(
                    "hub GET %s failed (%s); retry %d/%d in %.2fs",
                    path,
                    redact(reason),
                    attempt + 1,
                    self._retries,
                    delay,
                )
                await asyncio.sleep(delay)
        raise HubUnavailable(
            f"GET {path} kept failing after {self._retries + 1} attempts: {reason}",
            status=last_status,
            code=last_code or ("rate_limited" if last_status == 429 else None),
        )

    async def _post(
        self, path: str, build_body: Callable[[], dict[str, Any]], *, body_bytes: int = 0
    ) -> _Answer:
        """POST retried only while the connection is refused before anything was sent.

        The total timeout allows `body_bytes` to be sent at `UPLOAD_RATE` on top of `timeout`."""
        reason = ""
        total = self._timeout + body_bytes / UPLOAD_RATE
        for attempt in range(self._retries + 1):
            try:
                return await self._attempt("POST", path, auth=True, body=build_body(), total=total)
            except aiohttp.ClientConnectorError as exc:
                reason = _describe(exc)
            except aiohttp.ConnectionTimeoutError as exc:
                raise HubUnavailable(
                    f"POST {path}: could not connect to the hub, nothing was sent ({_describe(exc)})"
                ) from None
            except aiohttp.InvalidURL as exc:
                raise HubError(f"POST {path}: {_describe(exc)}", code="invalid_url") from None
            except _BodyTooLarge:
                raise OutcomeUnknown(
                    f"POST {path}: the hub's answer was too large to read; the request may have been taken"
                ) from None
            except TimeoutError:
                raise OutcomeUnknown(
                    f"POST {path}: no answer within {total:.4g}s; the request may have been taken"
                ) from None
            except aiohttp.ClientError as exc:
                raise OutcomeUnknown(
                    f"POST {path}: the connection failed after sending ({_describe(exc)}); "
                    "the request may have been taken"
                ) from None
            if attempt < self._retries:
                delay = self._delay(attempt)
                log.warning(
                    "hub POST %s could not connect (%s); retry %d/%d in %.2fs",
                    path,
                    redact(reason),
                    attempt + 1,
                    self._retries,
                    delay,
                )
                await asyncio.sleep(delay)
        raise HubUnavailable(f"POST {path}: could not connect to the hub, nothing was sent ({reason})")

    # ------------------------------------------------------------------ parsing

    @staticmethod
    def _json_or_none(body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None

    def _error_for(self, answer: _Answer, what: str) -> HubError:
        """The error for a non-2xx answer: mapped by the hub's code, else a generic `HubError`."""
        payload = self._json_or_none(answer.body)
        code, message = _error_details(payload)
        if payload is None or (code is None and message is None):
            kind = answer.content_type or "no content type"
            return HubError(
                f"{what}: the hub answered HTTP {answer.status} with an unexpected body ({kind})",
                status=answer.status,
                code="bad_response",
            )
        cls = error_class_for(code) or (_STATUS_FALLBACK.get(answer.status) if code is None else None)
        text = redact(message or f"HTTP {answer.status}", self._api_key)
        if cls is None:
            return HubError(f"{what}: {text}", status=answer.status, code=code or f"http_{answer.status}")
        return cls(text, status=answer.status, code=code)

    def _read_answer(self, answer: _Answer, what: str) -> Any:
        if not 200 <= answer.status < 300:
            raise self._error_for(answer, what)
        payload = self._json_or_none(answer.body)
        if payload is None:
            raise HubError(
                f"{what}: the hub answered HTTP {answer.status} with a body that is not JSON",
                status=answer.status,
                code="bad_response",
            )
        return payload

    def _model(self, cls: type[_M], payload: Any, what: str) -> _M:
        try:
            return cls.model_validate(payload)
        except ValidationError:
            raise HubError(
                f"the hub's {what} has an unexpected shape", status=200, code="bad_response"
            ) from None

    def _submission_result(self, answer: _Answer) -> Generation:
        what = "POST /api/v1/images/generations"
        if 200 <= answer.status < 300:
            payload = _unwrap(self._json_or_none(answer.body), "id")
            try:
                generation = Generation.model_validate(payload)
            except ValidationError:
                generation = None
            # Without an id a taken generation can never be polled: as unreadable as no answer.
            if generation is None or (not generation.id.strip() and not generation.failed):
                raise OutcomeUnknown(
                    f"{what}: the hub answered HTTP {answer.status} but the generation could not be read; "
                    "it may have been taken",
                    status=answer.status,
                )
            return generation
        if 400 <= answer.status < 500:
            raise self._error_for(answer, what)
        code = _error_details(self._json_or_none(answer.body))[0]
        if answer.status >= 500 and error_class_for(code) is not None:
            raise self._error_for(answer, what)
        raise OutcomeUnknown(
            f"{what}: the hub answered HTTP {answer.status} without a documented error; "
            "the request may have been taken",
            status=answer.status,
        )
