"""Retry and timeout rules: reads are retried when safe; a submission that may have been sent never is."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest
from aiohttp import web

from bot.hub import GenerationFailed, HubClient, HubError, HubUnavailable, InvalidApiKey, OutcomeUnknown
from bot.hub.emulator import create_app

GEN_PATH = "/api/v1/images/generations"
CREDITS = "/api/v1/credits"


# ---------------------------------------------------------------------- GET


async def test_get_is_retried_after_a_503_and_succeeds(state, hub):
    state.http_error_next(1, status=503, paths=[CREDITS])
    assert (await hub.get_credits()).credits == 1000
    assert [r.status for r in state.requests_to(CREDITS)] == [503, 200]


async def test_get_is_retried_after_a_reset_connection(state, hub):
    state.reset_next(1, paths=[CREDITS])
    assert (await hub.get_credits()).credits == 1000
    assert state.requests_to(CREDITS)[-1].status == 200


async def test_get_is_retried_after_a_timeout(state, emulator, key, client_for):
    state.hang_next(1, seconds=30, paths=[CREDITS])
    async with client_for(emulator, key, timeout=0.3) as client:
        started = time.monotonic()
        assert (await client.get_credits()).credits == 1000
    assert time.monotonic() - started < 5
    assert len(state.requests_to(CREDITS)) == 2


async def test_get_gives_up_with_hub_unavailable(state, hub):
    state.http_error_next(10, status=500, paths=[CREDITS])
    with pytest.raises(HubUnavailable) as caught:
        await hub.get_credits()
    assert caught.value.status == 500 and caught.value.code == "unavailable"
    assert len(state.requests_to(CREDITS)) == 3  # 1 + retries=2


async def test_get_timeouts_exhausted_give_hub_unavailable_within_the_timeouts(
    state, emulator, key, client_for
):
    state.hang_next(5, seconds=30, paths=["/api/v1/generations"])
    async with client_for(emulator, key, timeout=0.2, retries=1) as client:
        started = time.monotonic()
        with pytest.raises(HubUnavailable, match="timed out"):
            await client.get_generation("g")
    assert time.monotonic() - started < 3


async def test_429_retry_after_is_honoured(state, hub):
    state.http_error_next(1, status=429, paths=[CREDITS], retry_after=0.4)
    started = time.monotonic()
    assert (await hub.get_credits()).credits == 1000
    assert time.monotonic() - started >= 0.35
    assert [r.status for r in state.requests_to(CREDITS)] == [429, 200]


async def test_429_retry_after_is_capped(state, emulator, key, client_for):
    state.http_error_next(1, status=429, paths=[CREDITS], retry_after=3600)
    async with client_for(emulator, key, max_retry_after=0.1) as client:
        started = time.monotonic()
        assert (await client.get_credits()).credits == 1000
    assert time.monotonic() - started < 3


async def test_a_definite_4xx_on_get_is_not_retried(state, emulator, client_for):
    async with client_for(emulator, "gih_live_" + "z" * 32) as client:
        with pytest.raises(InvalidApiKey):
            await client.get_credits()
    assert len(state.requests_to(CREDITS)) == 1


async def test_get_against_a_refused_port_is_hub_unavailable(closed_port, client_for):
    async with client_for(f"http://127.0.0.1:{closed_port}", None, retries=1) as client:
        with pytest.raises(HubUnavailable):
            await client.list_models()


# ---------------------------------------------------------------------- POST


async def test_post_dropped_after_processing_is_outcome_unknown_and_charged_once(state, hub, key):
    state.drop_after_processing_next(1)
    with pytest.raises(OutcomeUnknown) as caught:
        await hub.generate(model="gpt-image-2", prompt="p", n=2)
    assert caught.value.status is None and caught.value.code == "outcome_unknown"
    assert len(state.requests_to(GEN_PATH, "POST")) == 1  # not retried
    assert len(state.generations) == 1  # the hub did take it...
    assert state.balance(key) == 1000 - 16  # ...and charged it exactly once


async def test_post_reset_before_processing_is_outcome_unknown_and_not_retried(state, hub, key):
    state.reset_next(1, paths=[GEN_PATH])
    with pytest.raises(OutcomeUnknown):
        await hub.generate(model="gpt-image-2", prompt="p")
    assert len(state.requests_to(GEN_PATH, "POST")) == 1
    assert not state.generations and state.balance(key) == 1000


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_post_5xx_without_a_documented_code_is_outcome_unknown(state, hub, status):
    state.http_error_next(1, status=status, paths=[GEN_PATH])
    with pytest.raises(OutcomeUnknown) as caught:
        await hub.generate(model="gpt-image-2", prompt="p")
    assert caught.value.status == status
    assert len(state.requests_to(GEN_PATH, "POST")) == 1


async def test_post_timeout_is_outcome_unknown(state, emulator, key, client_for):
    state.hang_next(1, seconds=30, paths=[GEN_PATH])
    async with client_for(emulator, key, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown, match="no answer"):
            await client.generate(model="gpt-image-2", prompt="p")
    assert time.monotonic() - started < 3
    assert len(state.requests_to(GEN_PATH, "POST")) == 1


async def test_post_connection_refused_is_retried_then_hub_unavailable(state, key, closed_port, caplog):
    caplog.set_level(logging.WARNING, logger="bot.hub")
    async with HubClient(f"http://127.0.0.1:{closed_port}", key, retries=2, backoff=0.01) as client:
        with pytest.raises(HubUnavailable, match="nothing was sent") as caught:
            await client.generate(model="gpt-image-2", prompt="p")
    assert caught.value.code == "unavailable"
    assert len([r for r in caplog.records if "could not connect" in r.getMessage()]) == 2
    assert key not in caplog.text


async def test_post_to_a_stopped_emulator_charges_nothing(state, key, serve_app):
    async with serve_app(create_app(state)) as url:
        pass  # started and stopped: the port now refuses connections
    async with HubClient(url, key, retries=1, backoff=0.01) as client:
        with pytest.raises(HubUnavailable):
            await client.generate(model="gpt-image-2", prompt="p")
    assert state.requests == [] and state.generations == {} and state.balance(key) == 1000


SEEN = web.AppKey("seen", list)


def _post_app(status: int, body: str, content_type: str = "application/json") -> web.Application:
    app = web.Application()
    seen: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(1)
        return web.Response(status=status, text=body, content_type=content_type)

    app.router.add_post(GEN_PATH, handler)
    app[SEEN] = seen
    return app


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            500,
            json.dumps({"error": {"message": "provider down", "code": "generationFailed"}}),
            GenerationFailed,
        ),
        (503, json.dumps({"error": {"message": "try later", "code": "overloaded"}}), OutcomeUnknown),
        (502, "<html>Bad Gateway</html>", OutcomeUnknown),
        (202, "<html>oops</html>", OutcomeUnknown),
        (202, json.dumps({"status": "queued"}), OutcomeUnknown),
        (302, "", OutcomeUnknown),
    ],
    ids=["500-documented", "503-undocumented-code", "502-html", "202-html", "202-no-id", "redirect"],
)
async def test_post_answers_are_classified_safely(serve_app, status, body, expected):
    app = _post_app(status, body)
    async with serve_app(app) as url, HubClient(url, "gih_live_" + "k" * 32, backoff=0.01) as client:
        with pytest.raises(expected) as caught:
            await client.generate(model="gpt-image-2", prompt="p")
    assert caught.value.status == status
    assert len(app[SEEN]) == 1


# ---------------------------------------------------------------------- the key stays secret


async def test_key_never_appears_in_errors_or_reprs(state, emulator, serve_app, closed_port, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "gih_live_" + "S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tAB"
    errors: list[HubError] = []
    async with HubClient(emulator, secret, retries=1, backoff=0.01) as client:
        assert secret not in repr(client) and secret not in str(client)
        assert "…" in repr(client) and secret[-4:] in repr(client)
        try:
            await client.get_credits()
        except HubError as exc:
            errors.append(exc)
        state.drop_after_processing_next(1)
        state.add_key(secret)
        try:
            await client.generate(model="gpt-image-2", prompt="p")
        except HubError as exc:
            errors.append(exc)
    echo = web.Application()

    async def echo_key(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": f"bad key {request.headers['Authorization']}", "code": "weird"}}, status=400
        )

    echo.router.add_get(CREDITS, echo_key)
    async with serve_app(echo) as url, HubClient(url, secret) as client:
        try:
            await client.get_credits()
        except HubError as exc:
            errors.append(exc)
    async with HubClient(f"http://127.0.0.1:{closed_port}", secret, retries=1, backoff=0.01) as client:
        for call in (client.get_credits, lambda: client.generate(model="m", prompt="p")):
            try:
                await call()
            except HubError as exc:
                errors.append(exc)
    assert [type(e).__name__ for e in errors] == [
        "InvalidApiKey",
        "OutcomeUnknown",
        "HubError",
        "HubUnavailable",
        "HubUnavailable",
    ]
    assert "bad key" in errors[2].message
    for error in errors:
        assert secret not in str(error) and secret not in repr(error) and secret not in error.message
    assert secret not in caplog.text


# ---------------------------------------------------------------------- sessions


async def test_a_shared_session_is_left_open_and_an_owned_one_closed(hub, emulator):
    async with aiohttp.ClientSession() as session:
        async with HubClient(emulator, None, session=session) as client:
            assert len(await client.list_models()) == 1
        assert not session.closed
    owned = HubClient(emulator, None)
    async with owned:
        await owned.list_models()
        inner = owned._session
    assert inner is not None and inner.closed


async def test_client_works_without_the_context_manager(emulator):
    client = HubClient(emulator, None)
    try:
        assert [m.id for m in await client.list_models()] == ["gpt-image-2"]
    finally:
        await client.close()


def test_base_url_is_validated():
    with pytest.raises(ValueError):
        HubClient("ftp://example.com", None)
    assert HubClient("http://hub.local/", None).base_url == "http://hub.local"


async def test_concurrent_calls_share_one_client(state, hub):
    results = await asyncio.gather(*(hub.generate(model="gpt-image-2", prompt=f"p{i}") for i in range(4)))
    assert len({g.id for g in results}) == 4 and len(state.generations) == 4
