"""A submission's timeout allows for its upload; answers without an id or with a negative charge are
not taken at face value."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from bot.hub import HubClient, OutcomeUnknown, Reference
from bot.hub.client import UPLOAD_RATE
from bot.hub.types import Generation

GEN_PATH = "/api/v1/images/generations"
KEY = "gih_live_" + "k" * 32


def slow_reader_app(bytes_per_tick: int, tick: float) -> tuple[web.Application, list[int]]:
    """A hub on a slow link: it takes the request body `bytes_per_tick` at a time, one per `tick`."""
    received: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        total = 0
        while chunk := await request.content.read(bytes_per_tick):
            total += len(chunk)
            await asyncio.sleep(tick)  # the link's pace, not a wait for anything
        received.append(total)
        return web.json_response({"id": "gen_slow", "status": "queued"}, status=202)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post(GEN_PATH, handler)
    return app, received


async def test_a_large_upload_over_a_slow_link_is_not_cut_off(serve_app):
    # 1 MiB at about 1.3 MB/s takes ~0.8 s: far past the 0.3 s timeout, well within its upload allowance.
    data = bytes(1024 * 1024)
    app, received = slow_reader_app(64 * 1024, 0.05)
    async with serve_app(app) as url, HubClient(url, KEY, timeout=0.3, backoff=0.01) as client:
        started = time.monotonic()
        gen = await client.generate(
            model="gpt-image-2", prompt="p", references=[Reference(data, "big.png", "image/png")]
        )
    assert gen.id == "gen_slow" and gen.status == "queued"
    assert received[0] > len(data)  # the whole multipart body arrived
    assert time.monotonic() - started > 0.3


async def test_a_hanging_hub_still_ends_a_submission_with_references_in_bounded_time(
    state, emulator, key, client_for
):
    state.hang_next(1, seconds=30, paths=[GEN_PATH])
    data = bytes(UPLOAD_RATE // 4)  # allowance: 0.25 s on top of the 0.3 s timeout
    async with client_for(emulator, key, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown, match=r"no answer within 0\.55s"):
            await client.generate(
                model="gpt-image-2", prompt="p", references=[Reference(data, "r.png", "image/png")]
            )
    assert 0.5 < time.monotonic() - started < 3
    assert len(state.requests_to(GEN_PATH, "POST")) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"id": "", "status": "queued"},
        {"id": "   ", "status": "succeeded", "images": [{"url": "/files/x.png"}]},
        {"id": None, "status": "queued"},
        {"data": {"id": "", "status": "running"}},
        {"status": "queued", "poll_url": "/api/v1/generations/"},
    ],
    ids=["empty", "blank-succeeded", "null", "wrapped-empty", "missing"],
)
async def test_a_taken_generation_without_an_id_is_outcome_unknown(serve_app, body):
    app = web.Application()
    app.router.add_post(GEN_PATH, _answer(body, 202))
    async with serve_app(app) as url, HubClient(url, KEY, backoff=0.01) as client:
        with pytest.raises(OutcomeUnknown) as caught:
            await client.generate(model="gpt-image-2", prompt="p")
    assert caught.value.status == 202


async def test_a_failed_answer_without_an_id_is_still_a_failure(serve_app):
    app = web.Application()
    app.router.add_post(GEN_PATH, _answer({"id": "", "status": "failed", "error": "nsfw"}, 200))
    async with serve_app(app) as url, HubClient(url, KEY, backoff=0.01) as client:
        gen = await client.generate(model="gpt-image-2", prompt="p", async_=False)
    assert gen.failed and gen.error == "nsfw"


async def test_a_negative_charge_is_unknown(serve_app):
    answer = {"id": "g1", "status": "succeeded", "usage": {"credits": -8, "credits_requested": 8}}
    app = web.Application()
    app.router.add_get("/api/v1/generations/g1", _answer(answer, 200))
    async with serve_app(app) as url, HubClient(url, KEY, backoff=0.01) as client:
        gen = await client.get_generation("g1")
    assert gen.succeeded and gen.usage.credits is None and gen.usage.credits_requested == 8
    assert Generation.model_validate({"id": "g", "usage": {"credits": 0}}).usage.credits == 0
    assert Generation.model_validate({"id": "g", "usage": {"credits": 12}}).usage.credits == 12


def _answer(body: object, status: int) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    return handler
