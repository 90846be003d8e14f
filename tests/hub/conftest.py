"""Fixtures for the hub client and emulator tests: real HTTP over 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from bot.hub import HubClient
from bot.hub.emulator import STATE, EmulatorState, create_app


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 and a free port; yield its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        state = app.get(STATE)
        if state is not None:
            await state.close()
        await runner.cleanup()


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState()


@pytest.fixture
async def emulator(state: EmulatorState) -> AsyncIterator[str]:
    async with serve(create_app(state)) as url:
        yield url


@pytest.fixture
def key(state: EmulatorState) -> str:
    return state.add_key(credits=1000)


def make_client(
    base_url: str,
    key: str | None,
    *,
    timeout: float = 5.0,
    retries: int = 2,
    backoff: float = 0.01,
    max_backoff: float = 0.05,
    max_retry_after: float = 30.0,
) -> HubClient:
    """A client with fast backoff for tests."""
    return HubClient(
        base_url,
        key,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        max_backoff=max_backoff,
        max_retry_after=max_retry_after,
    )


@pytest.fixture
def serve_app():
    """`async with serve_app(app) as base_url:` serves any aiohttp app on 127.0.0.1."""
    return serve


@pytest.fixture
def client_for():
    """`client_for(base_url, key, **options)`: a `HubClient` with fast test backoff."""
    return make_client


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.fixture
async def hub(emulator: str, key: str) -> AsyncIterator[HubClient]:
    async with make_client(emulator, key) as client:
        yield client
