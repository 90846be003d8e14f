"""HubClient.download: the emulator's images, the size cap, errors and timeouts."""

from __future__ import annotations

import io
import time

import pytest
from aiohttp import web
from PIL import Image

from bot.hub import DownloadError, DownloadTooLarge, HubClient


async def finished(state, hub, *, size="1024x1024", n=1):
    gen = await hub.generate(model="gpt-image-2", prompt="p", size=size, n=n, async_=False)
    assert gen.succeeded
    return gen


async def test_download_returns_the_emulators_png(state, hub):
    gen = await finished(state, hub, size="1024x576", n=2)
    first, second = gen.images
    data = await hub.download(first.url, 1_000_000)
    assert data == state.image_bytes(first.id)
    assert data != await hub.download(second.url, 1_000_000)
    with Image.open(io.BytesIO(data)) as png:
        assert png.format == "PNG" and png.size == (64, 36)  # 16:9 at image_px=64


async def test_download_sends_no_authorization_header(state, hub):
    gen = await finished(state, hub)
    await hub.download(gen.images[0].url, 1_000_000)
    [request] = [r for r in state.requests if r.path.startswith("/files/")]
    assert request.key_hash is None and request.key_suffix is None


async def test_relative_urls_resolve_against_the_hub(state, hub):
    gen = await finished(state, hub)
    image_id = gen.images[0].id
    assert await hub.download(f"/files/{image_id}.png", 1_000_000) == state.image_bytes(image_id)


async def test_declared_content_length_over_the_cap(state, hub):
    gen = await finished(state, hub)
    state.image_oversize(50_000, declare_length=True)
    with pytest.raises(DownloadTooLarge, match="50000 bytes") as caught:
        await hub.download(gen.images[0].url, 10_000)
    assert caught.value.code == "download_too_large" and isinstance(caught.value, DownloadError)


async def test_streamed_body_over_the_cap(state, hub):
    gen = await finished(state, hub)
    state.image_oversize(300_000, declare_length=False)
    with pytest.raises(DownloadTooLarge, match="over the 100000-byte limit"):
        await hub.download(gen.images[0].url, 100_000)


async def test_exactly_at_the_cap_is_fine(state, hub):
    gen = await finished(state, hub)
    state.image_oversize(4096, declare_length=False)
    assert len(await hub.download(gen.images[0].url, 4096)) == 4096


async def test_a_lying_content_length_is_still_capped(serve_app):
    app = web.Application()

    async def liar(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(20):
            await response.write(b"x" * 1024)
        await response.write_eof()
        return response

    app.router.add_get("/img.png", liar)
    async with serve_app(app) as url, HubClient(url, None) as client:
        with pytest.raises(DownloadTooLarge):
            await client.download(f"{url}/img.png", 5_000)
        assert len(await client.download(f"{url}/img.png", 20 * 1024)) == 20 * 1024


async def test_404_is_a_download_error(state, hub):
    gen = await finished(state, hub)
    state.image_404_next(1)
    with pytest.raises(DownloadError) as caught:
        await hub.download(gen.images[0].url, 1_000_000)
    assert caught.value.status == 404 and type(caught.value) is DownloadError
    assert await hub.download(gen.images[0].url, 1_000_000) == state.image_bytes(gen.images[0].id)
    with pytest.raises(DownloadError):
        await hub.download(gen.images[0].url.replace(gen.images[0].id, "clx_nope"), 1_000_000)


async def test_a_hanging_download_times_out(state, hub):
    gen = await finished(state, hub)
    state.image_hang_next(1, seconds=30)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out") as caught:
        await hub.download(gen.images[0].url, 1_000_000, timeout=0.3)
    assert caught.value.code == "download_timeout"
    assert time.monotonic() - started < 3


async def test_connection_refused_is_a_download_error(hub, closed_port):
    with pytest.raises(DownloadError):
        await hub.download(f"http://127.0.0.1:{closed_port}/x.png", 1000)


async def test_non_http_urls_are_refused(hub):
    with pytest.raises(DownloadError, match="non-http"):
        await hub.download("file:///etc/passwd", 1000)
