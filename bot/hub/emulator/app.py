"""The emulated hub as an aiohttp application: the documented v1 API, image files and test hooks.

* `GET /api/v1/models` (no auth), `GET /api/v1/credits`, `POST /api/v1/images/generations`
  (JSON or multipart with repeated `reference_image`), `GET /api/v1/generations/{id}` (owner only);
* `GET /files/{image_id}.png`: the generated images (no auth, like a CDN);
* `/_emulator/...`: JSON test hooks mirroring `EmulatorState` (see `ADMIN_ACTIONS`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import BodyPartReader, web

from bot.hub.emulator.images import sniff_image_type
from bot.hub.emulator.state import (
    EmulatorState,
    GenerationRecord,
    KeyRecord,
    ModelSpec,
    ReceivedReference,
    RequestRecord,
    hash_key,
)
from bot.hub.sizes import parse_size

STATE: web.AppKey[EmulatorState] = web.AppKey("hub_emulator_state", EmulatorState)
_RECORD: web.RequestKey[RequestRecord] = web.RequestKey("hub_emulator_request_record", RequestRecord)
_MAX_FIELD_BYTES = 1024 * 1024
_CHUNK = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answer in the hub's documented shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "code": code}}, status=status)


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "").strip()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering (the returned response is never sent)."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=499)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


# ---------------------------------------------------------------------- middleware


@web.middleware
async def _hub_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Records every request, applies injected faults and turns `ApiError` into error bodies."""
    state = request.app[STATE]
    if request.path.startswith("/_emulator/"):
        return await handler(request)
    token = _bearer(request)
    record = RequestRecord(
        method=request.method,
        path=request.path,
        key_hash=hash_key(token) if token else None,
        key_suffix=token[-4:] if token else None,
        content_type=request.content_type if request.body_exists else None,
    )
    state.record_request(record)
    request[_RECORD] = record
    fault = state.take_fault(request.path)
    if state.slow_seconds > 0:
        await state.sleep(state.slow_seconds)
    if fault is not None:
        if fault.kind == "reset":
            return _drop(request)
        if fault.kind == "error":
            record.status = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
            return web.Response(
                status=fault.status,
                text=f"<html><body><h1>{fault.status} Service Error</h1><p>try later</p></body></html>",
                content_type="text/html",
                headers=headers,
            )
        if fault.kind == "hang":
            await state.sleep(fault.seconds)
            if _client_gone(request) or state.closing:
                return _drop(request)
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message)
    except web.HTTPNotFound:
        if not request.path.startswith("/api/"):
            raise
        response = error_response(404, "notFound", "Not found")
    except web.HTTPMethodNotAllowed:
        response = error_response(405, "invalid_request", "Method not allowed")
    if record.status is None:
        record.status = response.status
    return response


# ---------------------------------------------------------------------- auth


def _authenticate(request: web.Request) -> tuple[str, KeyRecord]:
    """(raw key, key record) or the documented 401."""
    state = request.app[STATE]
    token = _bearer(request)
    if token is None:
        raise ApiError(401, "missingApiKey", "Missing API key")
    record = state.keys.get(hash_key(token))
    if record is None or record.revoked:
        raise ApiError(401, "invalidApiKey", "Invalid API key")
    if record.expired:
        raise ApiError(401, "expiredApiKey", "API key expired")
    return token, record


# ---------------------------------------------------------------------- v1 API


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"object": "list", "data": [m.to_json() for m in state.models]})


async def _credits(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _, key = _authenticate(request)
    account = state.accounts[key.user_id]
    return web.json_response(
        {
            "credits": account.credits,
            "account_type": account.account_type,
            "next_expiration": account.next_expiration,
        }
    )


def generation_json(state: EmulatorState, gen: GenerationRecord, base: str) -> dict[str, Any]:
    """A generation in the hub's documented response shape."""
    body: dict[str, Any] = {
        "object": "image_generation",
        "id": gen.id,
        "status": gen.status,
        "model": gen.model,
        "aspect_ratio": gen.aspect_ratio,
        "quality": gen.tier,
        "created_at": gen.created_at,
        "images": [
            {
                "id": i.id,
                "object": "image",
                "url": f"{state.image_url_base or base}/files/{i.id}.png",
                "created_at": i.created_at,
            }
            for i in gen.images
        ],
        "usage": {
            "credits": gen.credits_charged if gen.finished else 0,
            "credits_requested": gen.credits_requested,
        },
        "poll_url": f"{base}/api/v1/generations/{gen.id}",
    }
    if gen.finished:
        account = state.accounts[gen.user_id]
        body["balance"] = {
            "credits": account.credits,
            "account_type": account.account_type,
            "next_expiration": account.next_expiration,
        }
    if gen.status == "failed":
        body["error"] = {"message": gen.error or "Image generation failed", "code": "generationFailed"}
    return body


async def _read_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    buf = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise _invalid(f"{what} is over the {limit}-byte limit")
    return bytes(buf)


async def _parse_body(
    request: web.Request, record: RequestRecord, max_reference_bytes: int
) -> tuple[dict[str, Any], list[ReceivedReference], bool]:
    """(fields, references, multipart?) of a generation request."""
    if request.content_type == "application/json":
        try:
            payload = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            raise _invalid("Invalid request body") from None
        if not isinstance(payload, dict):
            raise _invalid("Invalid request body")
        record.fields = dict(payload)
        if "reference_image" in payload:
            raise _invalid("reference_image is only accepted in multipart/form-data")
        return payload, [], False
    if request.content_type == "multipart/form-data":
        fields: dict[str, Any] = {}
        refs: list[ReceivedReference] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise _invalid("nested multipart is not supported")
            name = part.name or ""
            if name == "reference_image":
                data = await _read_part(part, max_reference_bytes, f"reference image {len(refs) + 1}")
                ref = ReceivedReference(part.filename, part.headers.get("Content-Type"), data)
                refs.append(ref)
                record.references.append(ref)
            else:
                raw = await _read_part(part, _MAX_FIELD_BYTES, f"field {name}")
                fields[name] = raw.decode("utf-8", errors="replace")
                record.fields[name] = fields[name]
        return fields, refs, True
    raise _invalid("Content-Type must be application/json or multipart/form-data")


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _invalid(f"{name} must be true or false")


def _as_n(value: Any) -> int:
    if isinstance(value, bool):
        raise _invalid("n must be an integer from 1 to 4")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or not 1 <= value <= 4:
        raise _invalid("n must be an integer from 1 to 4")
    return value


async def _create_generation(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    raw_key, key = _authenticate(request)
    record = request[_RECORD]
    fields, refs, _multipart = await _parse_body(request, record, state.max_reference_bytes)

    model_id = fields.get("model")
    model = state.model(model_id) if isinstance(model_id, str) else None
    if model is None:
        raise _invalid(f"Unknown model: {model_id!r}")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid("prompt is required")
    n = _as_n(fields.get("n", 1))
    size = fields.get("size")
    if size is None:
        aspect, tier = model.default_aspect, model.default_tier
        size = "auto"
    else:
        if not isinstance(size, str):
            raise _invalid("size must be a string such as 1024x1024 or auto")
        try:
            aspect, tier = parse_size(size)
        except ValueError:
            raise _invalid(f"Invalid size: {size!r}") from None
    if tier not in model.tiers or tier not in model.credits:
        raise _invalid(f"{model.id} does not support the {tier} tier")
    quality = fields.get("quality")
    if quality is not None and quality not in model.qualities:
        raise _invalid(f"quality must be one of {', '.join(model.qualities)}")
    async_mode = _as_bool(fields.get("async", False), "async")
    if len(refs) > model.reference_image_limit:
        raise _invalid(f"{model.id} accepts at most {model.reference_image_limit} reference images")
    for i, ref in enumerate(refs, start=1):
        if sniff_image_type(ref.data) is None:
            raise _invalid(f"reference image {i} must be PNG, JPEG or WebP")

    account = state.accounts[key.user_id]
    cost = model.credits[tier] * n
    if account.credits < cost:
        raise ApiError(402, "insufficientCredits", "Insufficient credits")
    gen = state.create_generation(
        key=raw_key,
        model=model,
        prompt=prompt,
        size=size,
        quality=quality,
        aspect=aspect,
        tier=tier,
        n=n,
        async_mode=async_mode,
        references=refs,
    )
    base = _base(request)
    response: web.Response
    if async_mode:
        response = web.json_response(generation_json(state, gen, base), status=202)
    else:
        await state.wait_event(gen.done, None)
        if gen.status == "failed":
            response = error_response(500, "generationFailed", gen.error or "Image generation failed")
        else:
            response = web.json_response(generation_json(state, gen, base), status=200)
    if state.take_drop():
        return _drop(request)
    return response


async def _get_generation(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _, key = _authenticate(request)
    gen = state.generations.get(request.match_info["generation_id"])
    if gen is None or gen.user_id != key.user_id:
        raise ApiError(404, "notFound", "Generation not found")
    state.record_poll(gen)
    return web.json_response(generation_json(state, gen, _base(request)))


async def _file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    image_id = request.match_info["image_id"]
    if state.image_redirect_hops:  # `image_redirects`
        hop = int(request.query.get("hop", "0") or 0)
        if hop < state.image_redirect_hops:
            last = hop + 1 == state.image_redirect_hops
            target = f"{request.path}?hop={hop + 1}"
            if last and state.image_redirect_to:
                target = state.image_redirect_to
            return web.Response(status=302, headers={"Location": target})
    if state.images_held:  # `hold_images`
        await state.wait_images_released()
        if _client_gone(request) or state.closing:
            return _drop(request)
    fault = state.take_image_fault()
    if fault is not None and fault.kind == "404":
        return web.Response(status=404, text="Not Found")
    if fault is not None and fault.kind == "hang":
        await state.sleep(fault.seconds)
        if _client_gone(request) or state.closing:
            return _drop(request)
    if fault is not None and fault.kind == "oversize":
        stream = web.StreamResponse(headers={"Content-Type": "image/png"})
        if fault.declare_length:
            stream.content_length = fault.nbytes
        else:
            stream.enable_chunked_encoding()
        await stream.prepare(request)
        junk = b"\x89PNG\r\n\x1a\n" + b"\0" * (_CHUNK - 8)  # sniffs as a PNG, whatever its size
        sent = 0
        try:
            while sent < fault.nbytes:
                piece = junk[: min(_CHUNK, fault.nbytes - sent)]
                await stream.write(piece)
                sent += len(piece)
            await stream.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return stream
    if image_id not in state.images:
        return web.Response(status=404, text="Not Found")
    body = state.take_image_body()  # `image_body_next`
    if body is not None:
        return web.Response(body=body[0], headers={"Content-Type": body[1]})
    return web.Response(body=state.image_bytes(image_id), content_type="image/png")


# ---------------------------------------------------------------------- test hooks over HTTP


def _action_balance(state: EmulatorState, key: str) -> int:
    return state.balance(key)


def _action_add_model(state: EmulatorState, **spec: Any) -> dict[str, Any]:
    return state.add_model(ModelSpec(**spec)).to_json()


def _action_generation(state: EmulatorState, generation_id: str) -> dict[str, Any]:
    return state.generations[generation_id].to_json()


ADMIN_ACTIONS: dict[str, Callable[..., Any]] = {
    "add_key": EmulatorState.add_key,
    "balance": _action_balance,
    "set_credits": EmulatorState.set_credits,
    "expire_key": EmulatorState.expire_key,
    "revoke_key": EmulatorState.revoke_key,
    "add_model": _action_add_model,
    "fail_next": EmulatorState.fail_next,
    "fewer_images_next": EmulatorState.fewer_images_next,
    "http_error_next": EmulatorState.http_error_next,
    "hang_next": EmulatorState.hang_next,
    "reset_next": EmulatorState.reset_next,
    "drop_after_processing_next": EmulatorState.drop_after_processing_next,
    "slow": EmulatorState.slow,
    "image_404_next": EmulatorState.image_404_next,
    "image_hang_next": EmulatorState.image_hang_next,
    "image_oversize": EmulatorState.image_oversize,
    "hold_images": EmulatorState.hold_images,
    "set_image_url_base": EmulatorState.set_image_url_base,
    "image_redirects": EmulatorState.image_redirects,
    "image_body_next": EmulatorState.image_body_next,
    "hold": EmulatorState.set_hold,
    "complete": EmulatorState.complete,
    "set_status": EmulatorState.set_status,
    "clear_faults": EmulatorState.clear_faults,
    "generation": _action_generation,
}


async def _admin_action(request: web.Request) -> web.Response:
    state = request.app[STATE]
    action = ADMIN_ACTIONS.get(request.match_info["action"])
    if action is None:
        return web.json_response({"error": f"unknown action; one of {sorted(ADMIN_ACTIONS)}"}, status=404)
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    try:
        result = action(state, **body)
    except (TypeError, ValueError, KeyError) as exc:
        return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
    return web.json_response({"ok": True, "result": result})


async def _admin_generations(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response([g.to_json() for g in state.generations.values()])


async def _admin_requests(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response([r.to_json() for r in state.requests])


async def _on_shutdown(app: web.Application) -> None:
    await app[STATE].close()


def create_app(state: EmulatorState | None = None) -> web.Application:
    """The emulator application; its state is at `app[STATE]`."""
    app = web.Application(middlewares=[_hub_middleware])
    app[STATE] = state if state is not None else EmulatorState()
    app.router.add_get("/api/v1/models", _models)
    app.router.add_get("/api/v1/credits", _credits)
    app.router.add_post("/api/v1/images/generations", _create_generation)
    app.router.add_get("/api/v1/generations/{generation_id}", _get_generation)
    app.router.add_get("/files/{image_id}.png", _file)
    app.router.add_get("/_emulator/generations", _admin_generations)
    app.router.add_get("/_emulator/requests", _admin_requests)
    app.router.add_post("/_emulator/{action}", _admin_action)
    app.on_shutdown.append(_on_shutdown)
    return app


@asynccontextmanager
async def serving(
    state: EmulatorState | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[str, EmulatorState]]:
    """Run the emulator in this event loop; yield its base URL and state (tests, benchmarks)."""
    state = state or EmulatorState()
    runner = web.AppRunner(create_app(state), access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    try:
        yield f"http://{bound_host}:{bound_port}", state
    finally:
        await state.close()
        await runner.cleanup()
