"""Untrusted URLs: image URLs in the hub's answers (and /show's stored ones) never reach the bot's
own network, redirects are capped, and only image bytes are posted.

Everything here runs on 127.0.0.1, so the bed allows private addresses for exactly one host: the
emulator's own `host:port` (`ALLOW_PRIVATE_IMAGE_HOSTS`). An "internal service" listens on another
loopback port: whatever the hub's answers say, it must never see a request.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from PIL import Image
from sqlalchemy import update

from bot.db.models import JobRow
from bot.jobs import Job, JobStatus
from tests.bed import Bed
from tests.reliability.conftest import hub_downloads, result_messages, text_of


@dataclass
class InternalService:
    """Something on the bot's own network (an admin panel, a metadata service)."""

    url: str = ""
    port: int = 0
    requests: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        return web.Response(text="SECRET: internal admin data", content_type="image/png")


@pytest.fixture
async def internal() -> AsyncIterator[InternalService]:
    service = InternalService()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", service.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    service.port = runner.addresses[0][1]
    service.url = f"http://127.0.0.1:{service.port}"
    try:
        yield service
    finally:
        await runner.cleanup()


async def finished_without_images(bed: Bed) -> Job:
    """Run one /imagine to its end; it must end without any image posted."""
    job = await bed.job_of(await bed.imagine(prompt="a harbour"))
    job = await bed.wait_job(job.id, JobStatus.POSTED, JobStatus.FAILED)
    assert job.status is JobStatus.FAILED, job
    assert result_messages(bed, job) == []
    return job


def not_leaked(bed: Bed) -> None:
    for channel in bed.d.guild.channels:
        for message in bed.fake.messages(channel):
            assert "SECRET" not in text_of(message)
            for attachment in message.attachments:
                assert b"SECRET" not in attachment.data


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("{internal}", id="loopback"),
        pytest.param("http://localhost:{port}", id="name-resolving-to-loopback"),
        pytest.param("http://[::ffff:127.0.0.1]:{port}", id="ipv4-mapped-ipv6"),
        pytest.param("http://10.255.255.1:{port}", id="private"),
        pytest.param("http://169.254.169.254", id="link-local-metadata"),
    ],
)
async def test_image_urls_on_non_public_addresses_are_refused(
    rbed: Bed, internal: InternalService, where: str
) -> None:
    rbed.hub.set_image_url_base(where.format(internal=internal.url, port=internal.port))
    job = await finished_without_images(rbed)
    assert internal.requests == []
    assert job.last_error and "download failed" in job.last_error
    not_leaked(rbed)


async def test_a_redirect_to_a_non_public_address_is_refused(rbed: Bed, internal: InternalService) -> None:
    rbed.hub.image_redirects(1, to=f"{internal.url}/admin")
    await finished_without_images(rbed)
    assert internal.requests == []
    assert hub_downloads(rbed) == 1  # the first hop, from the hub; not the second
    not_leaked(rbed)


async def test_redirects_are_capped_at_three(rbed: Bed) -> None:
    rbed.hub.image_redirects(3)
    job = await rbed.job_of(await rbed.imagine(prompt="three hops"))
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert len(result_messages(rbed, job)) == 1

    rbed.hub.image_redirects(4)
    downloads = hub_downloads(rbed)
    await finished_without_images(rbed)
    assert hub_downloads(rbed) - downloads == 4  # the image itself was never asked for


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("<html><body>an error page</body></html>", id="html"),
        pytest.param(b"SECRET: internal admin data", id="text"),
        pytest.param(b"\x00" * 64, id="zeros"),
    ],
)
async def test_bytes_that_are_not_an_image_are_not_posted(rbed: Bed, body: str | bytes) -> None:
    rbed.hub.image_body_next(body)
    await finished_without_images(rbed)
    not_leaked(rbed)


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, format="GIF")
    return out.getvalue()


async def test_gif_bytes_are_posted_as_a_gif(rbed: Bed) -> None:
    data = gif()
    rbed.hub.image_body_next(data, content_type="image/gif")
    job = await rbed.job_of(await rbed.imagine(prompt="animated"))
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    (message,) = result_messages(rbed, job)
    (attachment,) = message.attachments
    assert attachment.data == data and attachment.filename.endswith(".gif")


async def test_private_addresses_are_refused_by_default_even_the_hubs_own(rbed: Bed) -> None:
    """The bed's allowance (the emulator's host) is the only thing letting its images through."""
    rbed.services.address_policy.allowed = frozenset()
    await finished_without_images(rbed)
    assert hub_downloads(rbed) == 0


async def test_show_refuses_stored_urls_on_non_public_addresses(bed: Bed, internal: InternalService) -> None:
    job = await bed.job_of(await bed.imagine(prompt="to be shown again"))
    job = await bed.wait_job(job.id, JobStatus.POSTED)
    async with bed.services.db.transaction() as s:  # as a hub answered before this version
        await s.execute(
            update(JobRow).where(JobRow.id == job.id).values(result_urls=[f"{internal.url}/files/x.png"])
        )
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "show", {"job_id": job.id})
    await it.callback()
    answer = await it.followup()
    assert "no longer has" in text_of(answer)
    assert internal.requests == []
    not_leaked(bed)
