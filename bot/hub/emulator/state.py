"""The emulated hub's state: accounts, keys, generations, requests seen and injected faults.

Everything here is plain Python so tests can arrange and inspect the hub directly; `app.py` exposes
the same hooks over HTTP under `/_emulator/...` for out-of-process use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from bot.hub.emulator.images import dimensions, render_png
from bot.hub.sizes import ASPECT_RATIOS, QUALITIES, TIERS

T = TypeVar("T")

#: what `EmulatorState.observers` are told about a generation
GenerationEvent = Literal["created", "polled", "finished"]

MAX_REFERENCE_BYTES = 50 * 1024 * 1024
_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY_ALPHABET = string.ascii_letters + string.digits


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str = "clx") -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def new_key() -> str:
    """A fresh key shaped like the hub's: `gih_live_` and 32 characters."""
    return "gih_live_" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class ModelSpec:
    """An image model the emulator offers."""

    id: str
    provider: str = "openai"
    credits: dict[str, int] = field(default_factory=lambda: {"1K": 8, "2K": 10, "4K": 12})
    aspect_ratios: list[str] = field(default_factory=lambda: list(ASPECT_RATIOS))
    tiers: list[str] = field(default_factory=lambda: list(TIERS))
    qualities: list[str] = field(default_factory=lambda: list(QUALITIES))
    reference_image_limit: int = 16
    default_aspect: str = "auto"
    default_tier: str = "1K"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "model",
            "provider": self.provider,
            "credits": dict(self.credits),
            "aspect_ratios": list(self.aspect_ratios),
            "tiers": list(self.tiers),
            "qualities": list(self.qualities),
            "reference_image_limit": self.reference_image_limit,
            "default_aspect_ratio": self.default_aspect,
            "default_tier": self.default_tier,
        }


def gpt_image_2() -> ModelSpec:
    """The one documented model."""
    return ModelSpec(id="gpt-image-2")


@dataclass
class Account:
    user_id: str
    credits: int
    account_type: str = "PRO"
    next_expiration: str | None = None


@dataclass
class KeyRecord:
    key_hash: str
    suffix: str
    user_id: str
    expired: bool = False
    revoked: bool = False


@dataclass
class ReceivedReference:
    """One `reference_image` part as the emulator received it."""

    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)


@dataclass
class RequestRecord:
    """One request the emulator saw (admin requests excluded)."""

    method: str
    path: str
    key_hash: str | None
    key_suffix: str | None
    content_type: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    references: list[ReceivedReference] = field(default_factory=list)
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "key_hash": self.key_hash,
            "key_suffix": self.key_suffix,
            "content_type": self.content_type,
            "fields": self.fields,
            "references": [
                {"filename": r.filename, "content_type": r.content_type, "bytes": len(r.data)}
                for r in self.references
            ],
            "status": self.status,
        }


@dataclass
class ImageRecord:
    id: str
    generation_id: str
    width: int
    height: int
    created_at: str


@dataclass
class GenerationRecord:
    """A generation as the emulated hub stores it."""

    id: str
    user_id: str
    key_hash: str
    model: str
    prompt: str
    size: str
    quality: str | None
    aspect_ratio: str
    tier: str
    n: int
    async_mode: bool
    credits_per_image: int
    created_at: str
    status: str = "queued"
    credits_charged: int = 0
    images: list[ImageRecord] = field(default_factory=list)
    error: str | None = None
    references: list[ReceivedReference] = field(default_factory=list)
    polls: int = 0
    fail: bool = False
    deliver: int | None = None
    finished: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def credits_requested(self) -> int:
        return self.credits_per_image * self.n

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "prompt": self.prompt,
            "size": self.size,
            "aspect_ratio": self.aspect_ratio,
            "tier": self.tier,
            "n": self.n,
            "credits_requested": self.credits_requested,
            "credits_charged": self.credits_charged,
            "images": [i.id for i in self.images],
            "polls": self.polls,
            "references": len(self.references),
            "error": self.error,
        }


@dataclass
class _Fault:
    kind: str  # "error" | "hang" | "reset"
    remaining: int
    status: int = 500
    seconds: float = 0.0
    paths: tuple[str, ...] | None = None
    retry_after: str | None = None

    def matches(self, path: str) -> bool:
        if self.paths is None:
            return True
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.paths)


@dataclass
class Fault:
    """What the middleware must do to one request."""

    kind: str
    status: int = 500
    seconds: float = 0.0
    retry_after: str | None = None
    nbytes: int = 0
    declare_length: bool = True


class EmulatorState:
    """The emulated hub. Options: `delay` (seconds a generation takes), `image_px` (long side of the
    generated PNGs), `max_reference_bytes`, `hold` (generations wait for `complete()`).

    Harness hooks (load tests and benchmarks use these, never the emulator's internals): `duration(gen)`
    gives each generation its own length instead of `delay`; with `gate` (an `asyncio.Event`) generations
    stay `running` until it is set, then finish `after_gate(gen)` seconds later; `observers` are called
    with each generation's "created", "polled" and "finished" events."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        image_px: int = 64,
        account_type: str = "PRO",
        max_reference_bytes: int = MAX_REFERENCE_BYTES,
        hold: bool = False,
        models: Iterable[ModelSpec] | None = None,
        duration: Callable[[GenerationRecord], float] | None = None,
        gate: asyncio.Event | None = None,
        after_gate: Callable[[GenerationRecord], float] | None = None,
    ) -> None:
        self.delay = delay
        self.duration = duration
        self.gate = gate
        self.after_gate = after_gate
        self.observers: list[Callable[[GenerationEvent, GenerationRecord], None]] = []
        self.image_px = image_px
        self.account_type = account_type
        self.max_reference_bytes = max_reference_bytes
        self.hold = hold
        self.models: list[ModelSpec] = list(models) if models is not None else [gpt_image_2()]
        self.accounts: dict[str, Account] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.generations: dict[str, GenerationRecord] = {}
        self.images: dict[str, ImageRecord] = {}
        self.requests: list[RequestRecord] = []
        self.slow_seconds = 0.0
        self._faults: list[_Fault] = []
        self._fail_next = 0
        self._fewer_next = 0
        self._fewer_deliver = 1
        self._drop_next = 0
        self._image_404_next = 0
        self._image_hang: list[float] = []
        self._image_oversize: list[tuple[int, bool]] = []
        self._png_cache: dict[str, bytes] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._closing: asyncio.Event | None = None
        self._images_released: asyncio.Event | None = None
        # Untrusted-URL knobs: where answers say the images are, redirects, what the files hold.
        self.image_url_base: str | None = None
        self.image_redirect_hops = 0
        self.image_redirect_to: str | None = None
        self._image_bodies: list[tuple[bytes, str]] = []

    # ------------------------------------------------------------------ accounts and keys

    def add_key(
        self,
        key: str | None = None,
        credits: int = 1000,
        *,
        account_type: str | None = None,
        user: str | None = None,
        next_expiration: str | None = None,
        expired: bool = False,
        revoked: bool = False,
    ) -> str:
        """Register a key (a fresh one if None) and return it. Without `user` the key gets its own
        account holding `credits`; with the id of an existing `user` it shares that account."""
        raw = key or new_key()
        user_id = user or new_id("usr")
        if user_id not in self.accounts:
            self.accounts[user_id] = Account(
                user_id, credits, account_type or self.account_type, next_expiration
            )
        digest = hash_key(raw)
        self.keys[digest] = KeyRecord(digest, raw[-4:], user_id, expired=expired, revoked=revoked)
        return raw

    def account_for(self, key: str) -> Account:
        return self.accounts[self.keys[hash_key(key)].user_id]

    def user_of(self, key: str) -> str:
        return self.keys[hash_key(key)].user_id

    def balance(self, key: str) -> int:
        """Credits of the key's owner."""
        return self.account_for(key).credits

    def set_credits(self, key: str, credits: int) -> None:
        self.account_for(key).credits = credits

    def expire_key(self, key: str) -> None:
        self.keys[hash_key(key)].expired = True

    def revoke_key(self, key: str) -> None:
        self.keys[hash_key(key)].revoked = True

    def model(self, model_id: str) -> ModelSpec | None:
        return next((m for m in self.models if m.id == model_id), None)

    def add_model(self, spec: ModelSpec | dict[str, Any]) -> ModelSpec:
        model = spec if isinstance(spec, ModelSpec) else ModelSpec(**spec)
        self.models.append(model)
        return model

    # ------------------------------------------------------------------ faults

    def fail_next(self, n: int = 1) -> None:
        """The next `n` generations fail (credits refunded)."""
        self._fail_next += n

    def fewer_images_next(self, n: int = 1, deliver: int = 1) -> None:
        """The next `n` generations deliver only `deliver` images (the difference refunded)."""
        self._fewer_next += n
        self._fewer_deliver = deliver

    def http_error_next(
        self,
        n: int = 1,
        status: int = 500,
        paths: Iterable[str] | None = None,
        retry_after: float | str | None = None,
    ) -> None:
        """Answer the next `n` matching requests (path prefixes; all if None) with `status` and an HTML
        body, without processing them."""
        self._faults.append(
            _Fault(
                "error",
                n,
                status=status,
                paths=_paths(paths),
                retry_after=None if retry_after is None else str(retry_after),
            )
        )

    def hang_next(self, n: int = 1, seconds: float = 30.0, paths: Iterable[str] | None = None) -> None:
        """Accept the next `n` matching requests, then say nothing for `seconds`. If the client is still
        there afterwards the request is processed normally; if it left, it is not processed."""
        self._faults.append(_Fault("hang", n, seconds=seconds, paths=_paths(paths)))

    def reset_next(self, n: int = 1, paths: Iterable[str] | None = None) -> None:
        """Close the connection of the next `n` matching requests without processing or answering."""
        self._faults.append(_Fault("reset", n, paths=_paths(paths)))

    def drop_after_processing_next(self, n: int = 1) -> None:
        """The next `n` generation submissions are processed (created and charged) but the connection
        is closed before the answer: an ambiguous submission."""
        self._drop_next += n

    def slow(self, seconds: float) -> None:
        """Delay every response by `seconds` (0 turns it off)."""
        self.slow_seconds = max(0.0, seconds)

    def image_404_next(self, n: int = 1) -> None:
        self._image_404_next += n

    def image_hang_next(self, n: int = 1, seconds: float = 30.0) -> None:
        self._image_hang.extend([seconds] * n)

    def hold_images(self, enabled: bool) -> None:
        """While on, every image download waits (a slow CDN); turning it off lets them all finish."""
        if enabled:
            if self._images_released is None or self._images_released.is_set():
                self._images_released = asyncio.Event()
        elif self._images_released is not None:
            self._images_released.set()
            self._images_released = None

    @property
    def images_held(self) -> bool:
        return self._images_released is not None

    async def wait_images_released(self) -> None:
        held = self._images_released
        if held is not None:
            await self.wait_event(held, None)

    def set_image_url_base(self, base: str | None) -> None:
        """Answers give image URLs under `base` (e.g. an internal address) instead of the hub's own;
        None: the hub's own again."""
        self.image_url_base = base.rstrip("/") if base else None

    def image_redirects(self, hops: int, to: str | None = None) -> None:
        """Image downloads answer `hops` redirects (302) before the image: through the hub's own
        URL, or, with `to`, the last one to `to` (any URL). 0 turns it off."""
        self.image_redirect_hops = max(0, hops)
        self.image_redirect_to = to

    def image_body_next(self, body: bytes | str, n: int = 1, content_type: str = "image/png") -> None:
        """The next `n` image downloads serve `body` (e.g. HTML, or a GIF) instead of the PNG."""
        data = body.encode() if isinstance(body, str) else body
        self._image_bodies.extend([(data, content_type)] * n)

    def take_image_body(self) -> tuple[bytes, str] | None:
        return self._image_bodies.pop(0) if self._image_bodies else None

    def image_oversize(self, nbytes: int, declare_length: bool = True) -> None:
        """The next image download streams `nbytes` of junk, with or without a Content-Length."""
        self._image_oversize.append((nbytes, declare_length))

    def clear_faults(self) -> None:
        self._faults.clear()
        self._fail_next = self._fewer_next = self._drop_next = self._image_404_next = 0
        self._image_hang.clear()
        self._image_oversize.clear()
        self._image_bodies.clear()
        self.image_url_base = None
        self.image_redirect_hops = 0
        self.image_redirect_to = None
        self.slow_seconds = 0.0

    def take_fault(self, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.matches(path):
                fault.remaining -= 1
                self._faults = [f for f in self._faults if f.remaining > 0]
                return Fault(fault.kind, fault.status, fault.seconds, fault.retry_after)
        return None

    def take_drop(self) -> bool:
        if self._drop_next > 0:
            self._drop_next -= 1
            return True
        return False

    def take_image_fault(self) -> Fault | None:
        if self._image_404_next > 0:
            self._image_404_next -= 1
            return Fault("404", status=404)
        if self._image_hang:
            return Fault("hang", seconds=self._image_hang.pop(0))
        if self._image_oversize:
            nbytes, declare = self._image_oversize.pop(0)
            return Fault("oversize", nbytes=nbytes, declare_length=declare)
        return None

    # ------------------------------------------------------------------ generations

    def set_hold(self, enabled: bool) -> None:
        """Hold mode: generations stay `running` until `complete()`. Turning it off lets held ones
        finish."""
        self.hold = enabled
        if not enabled:
            for gen in self.generations.values():
                gen.release.set()

    def create_generation(
        self,
        *,
        key: str,
        model: ModelSpec,
        prompt: str,
        size: str,
        quality: str | None,
        aspect: str,
        tier: str,
        n: int,
        async_mode: bool,
        references: list[ReceivedReference],
    ) -> GenerationRecord:
        """Charge the owner and start a generation (the caller checked the balance)."""
        record = self.keys[hash_key(key)]
        account = self.accounts[record.user_id]
        per_image = model.credits[tier]
        gen = GenerationRecord(
            id=new_id(),
            user_id=record.user_id,
            key_hash=record.key_hash,
            model=model.id,
            prompt=prompt,
            size=size,
            quality=quality,
            aspect_ratio=aspect,
            tier=tier,
            n=n,
            async_mode=async_mode,
            credits_per_image=per_image,
            created_at=now_iso(),
            references=references,
        )
        account.credits -= gen.credits_requested
        gen.credits_charged = gen.credits_requested
        if self._fail_next > 0:
            self._fail_next -= 1
            gen.fail = True
        elif self._fewer_next > 0:
            self._fewer_next -= 1
            gen.deliver = self._fewer_deliver
        self.generations[gen.id] = gen
        task = asyncio.get_running_loop().create_task(self._run(gen))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._notify()
        self._observe("created", gen)
        return gen

    async def _run(self, gen: GenerationRecord) -> None:
        total = self.delay if self.duration is None else self.duration(gen)
        first = total / 3
        if first > 0:
            await self.wait_event(gen.release, first)
        if not gen.finished and gen.status == "queued":
            gen.status = "running"
            self._notify()
        if self.hold:
            await self.wait_event(gen.release, None)
        elif self.gate is not None:
            await self.wait_event(self.gate, None)
            await self.wait_event(gen.release, self.after_gate(gen) if self.after_gate else 0.0)
        elif total - first > 0:
            await self.wait_event(gen.release, total - first)
        if not gen.finished and not (self._closing and self._closing.is_set()):
            self._finish(gen)

    def _finish(self, gen: GenerationRecord) -> None:
        account = self.accounts[gen.user_id]
        delivered = 0 if gen.fail else min(gen.n, gen.n if gen.deliver is None else gen.deliver)
        if delivered <= 0:
            gen.status = "failed"
            gen.error = "Image generation failed"
        else:
            gen.status = "succeeded"
            long_side = self.image_px
            width, height = dimensions(gen.aspect_ratio, long_side)
            for _ in range(delivered):
                image = ImageRecord(new_id(), gen.id, width, height, now_iso())
                gen.images.append(image)
                self.images[image.id] = image
        refund = gen.credits_per_image * (gen.n - delivered)
        account.credits += refund
        gen.credits_charged = gen.credits_per_image * delivered
        gen.finished = True
        gen.done.set()
        gen.release.set()
        self._notify()
        self._observe("finished", gen)

    def complete(self, generation_id: str, *, images: int | None = None, fail: bool = False) -> None:
        """Finish a generation now: with `images` delivered (default all), or failed."""
        gen = self.generations[generation_id]
        if gen.finished:
            raise ValueError(f"generation {generation_id} already finished")
        gen.fail = fail
        if images is not None:
            gen.deliver = images
        self._finish(gen)

    def set_status(self, generation_id: str, status: str) -> None:
        """Force a raw status string (for unknown-status tests); it does not finish the generation."""
        self.generations[generation_id].status = status
        self._notify()

    def record_poll(self, gen: GenerationRecord) -> None:
        gen.polls += 1
        self._notify()
        self._observe("polled", gen)

    def _observe(self, event: GenerationEvent, gen: GenerationRecord) -> None:
        for observer in self.observers:
            observer(event, gen)

    def polls(self, generation_id: str) -> int:
        return self.generations[generation_id].polls

    def image_bytes(self, image_id: str) -> bytes:
        """The PNG served for an image id (KeyError for an unknown one)."""
        cached = self._png_cache.get(image_id)
        if cached is None:
            image = self.images[image_id]
            cached = self._png_cache[image_id] = render_png(image.id, image.width, image.height)
        return cached

    def record_request(self, record: RequestRecord) -> None:
        self.requests.append(record)
        self._notify()

    def requests_to(self, path: str, method: str | None = None) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    # ------------------------------------------------------------------ waiting

    def _notify(self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done():
                result = predicate()
                if result is not None and result is not False:
                    future.set_result(result)

    async def _wait_for(self, predicate: Callable[[], T | None], within: float) -> T:
        result = predicate()
        if result is not None and result is not False:
            return result
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(within):
                return await future
        finally:
            self._waiters.remove(entry)

    async def wait_generation_created(self, count: int = 1, within: float = 10.0) -> GenerationRecord:
        """Wait until at least `count` generations exist; return the `count`-th one."""

        def check() -> GenerationRecord | None:
            gens = list(self.generations.values())
            return gens[count - 1] if len(gens) >= count else None

        return await self._wait_for(check, within)

    async def wait_polls(self, generation_id: str, n: int = 1, within: float = 10.0) -> int:
        """Wait until the generation was polled at least `n` times; return the poll count."""

        def check() -> int | None:
            polls = self.generations[generation_id].polls
            return polls if polls >= n else None

        return await self._wait_for(check, within)

    async def wait_status(self, generation_id: str, status: str, within: float = 10.0) -> GenerationRecord:
        """Wait until the generation has `status` (e.g. `running`)."""
        gen = self.generations[generation_id]
        return await self._wait_for(lambda: gen if gen.status == status else None, within)

    async def wait_finished(self, generation_id: str, within: float = 10.0) -> GenerationRecord:
        gen = self.generations[generation_id]
        return await self._wait_for(lambda: gen if gen.finished else None, within)

    async def wait_requests(
        self, count: int, path: str | None = None, within: float = 10.0
    ) -> list[RequestRecord]:
        """Wait until at least `count` requests (to `path`, if given) were seen; return them."""

        def check() -> list[RequestRecord] | None:
            seen = [r for r in self.requests if path is None or r.path == path]
            return seen if len(seen) >= count else None

        return await self._wait_for(check, within)

    # ------------------------------------------------------------------ lifecycle

    def _closing_event(self) -> asyncio.Event:
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    async def wait_event(self, event: asyncio.Event, within: float | None) -> None:
        """Wait for `event`, the state closing, or `within` seconds, whichever comes first."""
        closing = self._closing_event()
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(closing.wait())]
        try:
            await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            for w in waits:
                with contextlib.suppress(asyncio.CancelledError):
                    await w

    async def sleep(self, seconds: float) -> None:
        """Sleep that ends early when the emulator shuts down."""
        await self.wait_event(self._closing_event(), seconds)

    @property
    def closing(self) -> bool:
        return self._closing is not None and self._closing.is_set()

    async def close(self) -> None:
        """Stop generation tasks and end every hang (call before stopping the server)."""
        self._closing_event().set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _paths(paths: Iterable[str] | None) -> tuple[str, ...] | None:
    if paths is None:
        return None
    if isinstance(paths, str):
        return (paths,)
    return tuple(paths)
