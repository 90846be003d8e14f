"""HubClient against the emulator (and a few odd hubs) over real HTTP: endpoints, statuses, errors."""

from __future__ import annotations

import io
import json

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.hub import (
    ExpiredApiKey,
    GenerationFailed,
    HubError,
    HubModel,
    InsufficientCredits,
    InvalidApiKey,
    InvalidRequest,
    MissingApiKey,
    NotFound,
    Reference,
)
from bot.hub.emulator import ModelSpec

GEN_PATH = "/api/v1/images/generations"


def image(fmt: str, colour: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(out, format=fmt)
    return out.getvalue()


# ---------------------------------------------------------------------- models and credits


async def test_list_models_returns_the_documented_model(hub):
    models = await hub.list_models()
    assert [m.id for m in models] == ["gpt-image-2"]
    model = models[0]
    assert model.provider == "openai"
    assert model.credits == {"1K": 8, "2K": 10, "4K": 12}
    assert model.tiers == ["1K", "2K", "4K"]
    assert model.qualities == ["auto", "low", "medium", "high"]
    assert model.reference_image_limit == 16
    assert (model.default_aspect, model.default_tier) == ("auto", "1K")
    assert len(model.aspect_ratios) == 16 and "21:9" in model.aspect_ratios
    assert model.cost("2K", 3) == 30


async def test_list_models_needs_no_key_and_sees_added_models(state, emulator, client_for):
    state.add_model(
        ModelSpec(id="tiny-model", provider="acme", credits={"1K": 1}, tiers=["1K"], reference_image_limit=2)
    )
    async with client_for(emulator, None) as anonymous:
        models = await anonymous.list_models()
    assert [m.id for m in models] == ["gpt-image-2", "tiny-model"]
    assert models[1].credits == {"1K": 1} and models[1].reference_image_limit == 2
    assert state.requests[-1].key_hash is None


async def test_get_credits(state, hub, key):
    credits = await hub.get_credits()
    assert credits.credits == 1000
    assert credits.account_type == "PRO"
    assert credits.next_expiration is None
    state.set_credits(key, 123)
    assert (await hub.get_credits()).credits == 123


# ---------------------------------------------------------------------- generations


async def test_async_generation_sends_json_and_is_queued(state, hub, emulator):
    gen = await hub.generate(model="gpt-image-2", prompt="a cat", size="1536x1024", quality="high", n=2)
    assert gen.status == "queued" and not gen.is_finished
    assert gen.model == "gpt-image-2" and gen.aspect_ratio == "3:2" and gen.quality == "2K"
    assert gen.usage.credits == 0 and gen.usage.credits_requested == 20
    assert gen.poll_url == f"{emulator}/api/v1/generations/{gen.id}"
    assert gen.images == [] and gen.created_at
    [sent] = state.requests_to(GEN_PATH, "POST")
    assert sent.content_type == "application/json"
    assert sent.fields == {
        "model": "gpt-image-2",
        "prompt": "a cat",
        "size": "1536x1024",
        "quality": "high",
        "n": 2,
        "async": True,
    }
    assert sent.references == []


async def test_none_fields_are_omitted(state, hub):
    await hub.generate(model="gpt-image-2", prompt="plain")
    [sent] = state.requests_to(GEN_PATH, "POST")
    assert sent.fields == {"model": "gpt-image-2", "prompt": "plain", "n": 1, "async": True}


async def test_status_timeline_queued_running_succeeded(state, hub, key):
    state.set_hold(True)
    gen = await hub.generate(model="gpt-image-2", prompt="p", size="1024x1024", n=2)
    assert gen.status == "queued"
    await state.wait_status(gen.id, "running")
    running = await hub.get_generation(gen.id)
    assert running.status == "running" and not running.is_finished and running.images == []
    assert state.balance(key) == 1000 - 16  # charged up front
    state.complete(gen.id)
    done = await hub.get_generation(gen.id)
    assert done.succeeded and done.is_finished and not done.failed
    assert len(done.images) == 2 and all(i.url.endswith(".png") for i in done.images)
    assert done.usage.credits == 16
    assert done.balance is not None and done.balance.credits == 1000 - 16
    assert state.polls(gen.id) == 2


async def test_failed_generation_is_data_not_an_exception(state, hub, key):
    state.set_hold(True)
    gen = await hub.generate(model="gpt-image-2", prompt="p", n=3)
    state.complete(gen.id, fail=True)
    failed = await hub.get_generation(gen.id)
    assert failed.status == "failed" and failed.failed and failed.is_finished and not failed.succeeded
    assert failed.error == "Image generation failed"
    assert failed.images == [] and failed.usage.credits == 0 and failed.usage.credits_requested == 24
    assert failed.balance is not None and failed.balance.credits == 1000
    assert state.balance(key) == 1000


async def test_unknown_status_is_kept(state, hub):
    state.set_hold(True)
    gen = await hub.generate(model="gpt-image-2", prompt="p")
    state.set_status(gen.id, "moderation_review")
    seen = await hub.get_generation(gen.id)
    assert seen.status == "moderation_review"
    assert not seen.is_finished and not seen.succeeded and not seen.failed


async def test_sync_generation_returns_the_finished_generation(state, hub, key):
    gen = await hub.generate(model="gpt-image-2", prompt="p", size="1024x576", n=2, async_=False)
    assert gen.succeeded and len(gen.images) == 2
    assert gen.aspect_ratio == "16:9" and gen.usage.credits == 16
    assert gen.balance is not None and gen.balance.credits == state.balance(key) == 1000 - 16
    [sent] = state.requests_to(GEN_PATH, "POST")
    assert sent.fields["async"] is False


async def test_sync_generation_failure_raises_generation_failed_and_refunds(state, hub, key):
    state.fail_next(1)
    with pytest.raises(GenerationFailed) as caught:
        await hub.generate(model="gpt-image-2", prompt="p", n=2, async_=False)
    assert caught.value.status == 500 and caught.value.code == "generationFailed"
    assert state.balance(key) == 1000
    [gen] = state.generations.values()
    assert gen.status == "failed" and gen.credits_charged == 0


async def test_sync_generation_waits_for_a_held_generation(state, hub):
    import asyncio

    state.set_hold(True)
    task = asyncio.create_task(hub.generate(model="gpt-image-2", prompt="p", n=3, async_=False))
    created = await state.wait_generation_created()
    assert not task.done()
    state.complete(created.id, images=2)
    gen = await task
    assert gen.id == created.id and gen.succeeded and len(gen.images) == 2 and gen.usage.credits == 16


async def test_multipart_references_arrive_byte_for_byte(state, hub):
    refs = [
        Reference(image("PNG"), "first.png", "image/png"),
        Reference(image("JPEG", (0, 90, 200)), "second photo.jpg", "image/jpeg"),
        Reference(image("WEBP", (9, 9, 9)), "ảnh thứ ba.webp", "image/webp"),
    ]
    gen = await hub.generate(
        model="gpt-image-2", prompt="mix them", size="2048x2048", quality="low", n=1, references=refs
    )
    assert gen.status == "queued"
    [sent] = state.requests_to(GEN_PATH, "POST")
    assert sent.content_type == "multipart/form-data"
    assert sent.fields == {
        "model": "gpt-image-2",
        "prompt": "mix them",
        "size": "2048x2048",
        "quality": "low",
        "n": "1",
        "async": "true",
    }
    got = [(r.filename, r.content_type, r.data) for r in sent.references]
    assert got == [(r.filename, r.content_type, r.data) for r in refs]
    assert len(state.generations[gen.id].references) == 3


async def test_multipart_sync_sends_async_false(state, hub):
    gen = await hub.generate(
        model="gpt-image-2", prompt="p", references=[Reference(image("PNG"))], async_=False
    )
    assert gen.succeeded
    [sent] = state.requests_to(GEN_PATH, "POST")
    assert sent.fields["async"] == "false" and "size" not in sent.fields and "quality" not in sent.fields


# ---------------------------------------------------------------------- documented errors


async def test_missing_api_key(emulator, client_for):
    async with client_for(emulator, None) as anonymous:
        with pytest.raises(MissingApiKey) as caught:
            await anonymous.get_credits()
    assert (caught.value.status, caught.value.code) == (401, "missingApiKey")


async def test_invalid_revoked_and_expired_keys(state, emulator, client_for):
    async with client_for(emulator, "gih_live_" + "x" * 32) as unknown:
        with pytest.raises(InvalidApiKey) as caught:
            await unknown.get_credits()
        assert (caught.value.status, caught.value.code) == (401, "invalidApiKey")
    revoked = state.add_key()
    state.revoke_key(revoked)
    async with client_for(emulator, revoked) as client:
        with pytest.raises(InvalidApiKey):
            await client.generate(model="gpt-image-2", prompt="p")
    expired = state.add_key()
    state.expire_key(expired)
    async with client_for(emulator, expired) as client:
        with pytest.raises(ExpiredApiKey) as caught_expired:
            await client.get_generation("anything")
    assert (caught_expired.value.status, caught_expired.value.code) == (401, "expiredApiKey")
    assert not state.generations


async def test_insufficient_credits_charges_nothing(state, hub, key):
    state.set_credits(key, 23)
    with pytest.raises(InsufficientCredits) as caught:
        await hub.generate(model="gpt-image-2", prompt="p", size="2048x2048", n=3)  # 30 credits
    assert (caught.value.status, caught.value.code) == (402, "insufficientCredits")
    assert state.balance(key) == 23 and not state.generations
    gen = await hub.generate(model="gpt-image-2", prompt="p", size="2048x2048", n=2)  # 20 credits
    assert gen.usage.credits_requested == 20 and state.balance(key) == 3


async def test_not_found_and_other_owners_generation(state, hub, emulator, client_for):
    with pytest.raises(NotFound) as caught:
        await hub.get_generation("clx_missing")
    assert (caught.value.status, caught.value.code) == (404, "notFound")
    gen = await hub.generate(model="gpt-image-2", prompt="mine")
    async with client_for(emulator, state.add_key()) as stranger:
        with pytest.raises(NotFound):
            await stranger.get_generation(gen.id)
    assert state.polls(gen.id) == 0
    async with client_for(emulator, state.add_key(user=state.generations[gen.id].user_id)) as colleague:
        assert (await colleague.get_generation(gen.id)).id == gen.id


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"model": "dall-e-9", "prompt": "p"}, "model"),
        ({"model": "gpt-image-2", "prompt": "   "}, "prompt"),
        ({"model": "gpt-image-2", "prompt": "p", "n": 5}, "n must"),
        ({"model": "gpt-image-2", "prompt": "p", "n": 0}, "n must"),
        ({"model": "gpt-image-2", "prompt": "p", "size": "huge"}, "size"),
        ({"model": "gpt-image-2", "prompt": "p", "quality": "ultra"}, "quality"),
        (
            {
                "model": "gpt-image-2",
                "prompt": "p",
                "references": [Reference(b"GIF89a....", "a.gif", "image/gif")],
            },
            "PNG, JPEG or WebP",
        ),
        ({"model": "gpt-image-2", "prompt": "p", "references": [Reference(image("PNG"))] * 17}, "at most 16"),
    ],
    ids=["model", "prompt", "n-high", "n-zero", "size", "quality", "not-an-image", "too-many-references"],
)
async def test_invalid_requests(state, hub, key, kwargs, fragment):
    with pytest.raises(InvalidRequest) as caught:
        await hub.generate(**kwargs)
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")
    assert fragment in caught.value.message
    assert not state.generations and state.balance(key) == 1000


async def test_reference_over_the_size_limit_is_refused(state, hub):
    state.max_reference_bytes = 2000
    big = image("PNG") + b"\0" * 3000
    with pytest.raises(InvalidRequest, match="limit"):
        await hub.generate(model="gpt-image-2", prompt="p", references=[Reference(big)])
    assert not state.generations


async def test_error_bodies_are_json_in_the_documented_shape(emulator):
    async with aiohttp.ClientSession() as session, session.get(f"{emulator}/api/v1/credits") as resp:
        assert resp.status == 401
        assert resp.content_type == "application/json"
        assert await resp.json() == {"error": {"message": "Missing API key", "code": "missingApiKey"}}


# ---------------------------------------------------------------------- odd hubs


def odd_hub(routes: dict[str, tuple[int, str, str]]) -> web.Application:
    """An app answering each path with (status, content type, body)."""
    app = web.Application()

    def handler_for(status: int, content_type: str, body: str):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status, text=body, content_type=content_type)

        return handler

    for path, (status, content_type, body) in routes.items():
        app.router.add_route("*", path, handler_for(status, content_type, body))
    return app


MODEL = {"id": "gpt-image-2", "credits": {"1K": 8}}


@pytest.mark.parametrize(
    "payload",
    [[MODEL], {"data": [MODEL]}, {"models": [MODEL]}, {"object": "list", "data": [MODEL, {"no_id": 1}]}],
    ids=["bare-list", "data", "models", "skips-unreadable-entries"],
)
async def test_model_list_shapes(serve_app, client_for, payload):
    app = odd_hub({"/api/v1/models": (200, "application/json", json.dumps(payload))})
    async with serve_app(app) as url, client_for(url, None) as client:
        models = await client.list_models()
    assert models == [HubModel.model_validate(MODEL)]


async def test_model_entries_with_unknown_fields_and_variants(serve_app, client_for):
    payload = {
        "models": [
            {
                "model": "x",
                "supported_aspect_ratios": ["1:1"],
                "pricing": {"1K": 2},
                "max_reference_images": 3,
                "brand_new": {"a": 1},
            }
        ]
    }
    app = odd_hub({"/api/v1/models": (200, "application/json", json.dumps(payload))})
    async with serve_app(app) as url, client_for(url, None) as client:
        [model] = await client.list_models()
    assert (model.id, model.aspect_ratios, model.credits, model.reference_image_limit) == (
        "x",
        ["1:1"],
        {"1K": 2},
        3,
    )


@pytest.mark.parametrize(
    ("route", "call"),
    [
        ((200, "text/html", "<html>hello</html>"), "models"),
        ((200, "application/json", '{"unexpected": true}'), "models"),
        ((200, "application/json", '"a string"'), "credits"),
        ((200, "application/json", '{"account_type": "PRO"}'), "credits"),
        ((200, "application/json", '{"status": "queued"}'), "generation"),
        ((200, "application/json", "{not json"), "generation"),
        ((404, "text/html", "<html><h1>Not Found</h1></html>"), "credits"),
        ((400, "text/plain", "bad"), "generation"),
    ],
    ids=[
        "html-200",
        "models-shape",
        "credits-string",
        "credits-missing",
        "generation-no-id",
        "broken-json",
        "html-404",
        "plain-400",
    ],
)
async def test_unexpected_bodies_raise_hub_error(serve_app, client_for, route, call):
    paths = {"models": "/api/v1/models", "credits": "/api/v1/credits", "generation": "/api/v1/generations/g1"}
    app = odd_hub({paths[call]: route})
    async with serve_app(app) as url, client_for(url, "gih_live_" + "k" * 32) as client:
        method = {
            "models": client.list_models,
            "credits": client.get_credits,
            "generation": lambda: client.get_generation("g1"),
        }[call]
        with pytest.raises(HubError) as caught:
            await method()
    assert type(caught.value) is HubError
    assert caught.value.code == "bad_response"
    assert caught.value.status == route[0]


async def test_unknown_error_code_keeps_the_code(serve_app, client_for):
    body = json.dumps({"error": {"message": "slow down", "code": "rateLimitedByPlan"}})
    app = odd_hub({"/api/v1/credits": (403, "application/json", body)})
    async with serve_app(app) as url, client_for(url, "gih_live_" + "k" * 32) as client:
        with pytest.raises(HubError) as caught:
            await client.get_credits()
    assert type(caught.value) is HubError
    assert (caught.value.status, caught.value.code) == (403, "rateLimitedByPlan")
    assert "slow down" in caught.value.message


async def test_generation_with_odd_fields_and_wrapped_data(serve_app, client_for):
    body = json.dumps(
        {
            "data": {
                "id": "g1",
                "status": "processing",
                "images": None,
                "usage": {"credits": None},
                "surprise": [1],
            }
        }
    )
    app = odd_hub({"/api/v1/generations/g1": (200, "application/json", body)})
    async with serve_app(app) as url, client_for(url, "gih_live_" + "k" * 32) as client:
        gen = await client.get_generation("g1")
    assert gen.id == "g1" and gen.status == "processing" and not gen.is_finished
    assert gen.images == [] and gen.usage.credits is None and gen.balance is None and gen.poll_url is None
