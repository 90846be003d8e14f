"""Bad input: prompts, attachments and hub answers that must not crash, spend, or ping anyone.

Each case ends with a clear message (ephemeral, or the job's status message), nothing spent
(the emulator's balance unchanged, no reservation left held) and no error logged by the bot.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.jobs import JobStatus
from tests.bed import Bed
from tests.fakediscord import FakeAttachment, FakeInteraction
from tests.reliability.conftest import (
    GENERATIONS,
    assert_mentions_disabled,
    assert_nothing_held,
    hub_posts,
    ledger,
    result_messages,
    spent,
    text_of,
)


def png(seed: int = 1, size: tuple[int, int] = (24, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (seed % 256, 40, 90)).save(out, format="PNG")
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, format="GIF")
    return out.getvalue()


@pytest.fixture(autouse=True)
def no_crash(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No error (a crashed step, an exception in a command) logged by the bot or discord.py."""
    with caplog.at_level(logging.WARNING):
        yield
    errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("bot", "cogs", "discord"))
    ]
    assert not errors, errors


async def refusal(it: FakeInteraction) -> str:
    """The member-facing refusal: the ephemeral first answer, or (after a public first answer) that
    answer edited into the refusal (no second message)."""
    cb = await it.callback()
    if cb.ephemeral:
        return text_of(cb)
    shown = await it.original(predicate=lambda m: "⚠️" in text_of(m))
    assert not it.followups and not it.original_deleted
    return text_of(shown)


async def assert_nothing_spent(bed: Bed, balance: int) -> None:
    assert bed.hub.balance(bed.key) == balance
    assert hub_posts(bed) == 0
    assert await spent(bed) == 0
    await assert_nothing_held(bed)


# -- prompts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        pytest.param("", "prompt is empty", id="empty"),
        pytest.param("  \n\t  ", "prompt is empty", id="whitespace"),
        pytest.param("\u200b\u200c\u200d\u2060\ufeff", "prompt is empty", id="zero-width-only"),
        pytest.param("x" * 4001, "the limit is 4,000", id="over-4000"),
    ],
)
async def test_unusable_prompts_are_refused(rbed: Bed, prompt: str, reason: str) -> None:
    balance = rbed.hub.balance(rbed.key)
    d = rbed.d
    it = await rbed.fake.slash(d.guild, d.images, d.alice, "imagine", {"prompt": prompt}, force=True)
    assert reason in await refusal(it)
    await assert_nothing_spent(rbed, balance)
    assert await ledger(rbed) == []
    assert_mentions_disabled(rbed)


def mention_prompts(bed: Bed) -> list[str]:
    return [
        "@everyone look at this",
        "@here a castle",
        f"<@&{bed.d.admin_role}> a dragon for the admins",
        f"<@{bed.d.bob.id}> a gift for bob",
    ]


@pytest.mark.parametrize("case", range(4), ids=["everyone", "here", "role", "member"])
async def test_mentions_in_prompts_never_ping(rbed: Bed, case: int) -> None:
    prompt = mention_prompts(rbed)[case]
    it = await rbed.imagine(prompt=prompt)
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    (message,) = result_messages(rbed, job)
    assert prompt in text_of(message)  # shown as written, inside an embed
    assert prompt not in (message.content or "")
    assert assert_mentions_disabled(rbed) >= 3  # first answer, status edit(s), result


async def test_mentions_never_ping_in_a_failure_told_through_the_channel(rbed: Bed) -> None:
    """Without a usable interaction the member is pinged in the channel: only that member."""
    rbed.hub.set_hold(True)
    it = await rbed.imagine(prompt=f"@everyone <@&{rbed.d.admin_role}> <@{rbed.d.bob.id}>")
    job = await rbed.wait_job((await rbed.job_of(it)).id, JobStatus.RUNNING)
    rbed.fake.expire_interaction(it)
    await rbed.services.jobs.update(job.id, None, interaction_token=None)
    rbed.hub.complete(job.hub_generation_id or "", fail=True)
    await rbed.wait_job(job.id, JobStatus.FAILED)
    told = await rbed.fake.wait_message(job.channel_id, lambda m: f"job #{job.id}" in text_of(m))
    assert told.content == f"<@{rbed.d.alice.id}>"
    assert_mentions_disabled(rbed, may_ping={rbed.d.alice.id})


async def test_markdown_and_links_in_prompts_are_shown_not_fetched(rbed: Bed) -> None:
    bait = [f"{rbed.fake.url}/attachments/424242/bait.png", f"{rbed.hub_url}/files/bait.png"]
    prompt = f"**bold** __under__ `code` ||spoiler|| > quote [a link]({bait[0]}) <{bait[1]}>"
    job = await rbed.job_of(await rbed.imagine(prompt=prompt))
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    (request,) = rbed.hub.requests_to(GENERATIONS, "POST")
    assert request.fields["prompt"] == prompt  # sent to the hub as text
    assert not [r for r in rbed.fake.requests if "424242" in r.path]
    assert not [r for r in rbed.hub.requests if "bait" in r.path]


# -- attachments -----------------------------------------------------------------------------------------

BIG = 60 * 1024 * 1024
ATTACHMENTS: dict[str, tuple[FakeAttachment, str | None]] = {
    "text": (FakeAttachment("notes.txt", b"a shopping list", content_type="text/plain"), "not a PNG"),
    "svg": (
        FakeAttachment(
            "logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', content_type="image/svg+xml"
        ),
        "not a PNG",
    ),
    "gif": (FakeAttachment("anim.gif", gif(), content_type="image/gif"), "not a PNG"),
    "png-declared-as-other": (
        FakeAttachment("photo.bin", png(), content_type="application/octet-stream"),
        None,  # accepted: the bytes decide
    ),
    "other-declared-as-png": (
        FakeAttachment("fake.png", b"GIF89a not really", content_type="image/png"),
        "not a PNG",
    ),
    "truncated-png": (FakeAttachment("cut.png", png()[:-30], content_type="image/png"), "truncated"),
    "zero-bytes": (FakeAttachment("empty.png", b"", content_type="image/png"), "is empty"),
    "over-50mb-declared": (
        FakeAttachment("huge.png", png(), content_type="image/png", size=BIG),
        "at most 50 MB",
    ),
}


@pytest.mark.parametrize("case", list(ATTACHMENTS))
async def test_reference_attachments(rbed: Bed, case: str) -> None:
    template, reason = ATTACHMENTS[case]
    attachment = FakeAttachment(
        template.filename, template.data, content_type=template.content_type, size=template.size
    )
    balance = rbed.hub.balance(rbed.key)
    it = await rbed.imagine(attachments=(attachment,))
    if reason is None:
        job = await rbed.wait_job((await rbed.job_of(it)).id, JobStatus.POSTED)
        (request,) = rbed.hub.requests_to(GENERATIONS, "POST")
        assert [(r.data, r.content_type) for r in request.references] == [(attachment.data, "image/png")]
        assert len(result_messages(rbed, job)) == 1
        return
    assert reason in await refusal(it)
    await assert_nothing_spent(rbed, balance)
    downloads = [r for r in rbed.fake.requests if r.path.startswith(f"/attachments/{attachment.id}/")]
    if case in ("over-50mb-declared", "zero-bytes"):
        assert downloads == []  # refused by the declared size, never downloaded, nothing reserved
        assert await ledger(rbed) == []
    else:  # reserved before downloading (nothing is fetched for a request that can't be paid), returned
        assert await ledger(rbed) == [("reserve", -8), ("release", 8)]
    assert_mentions_disabled(rbed)


async def test_seventeen_images_through_the_context_menu_are_capped_to_the_models_limit(rbed: Bed) -> None:
    images = [png(i) for i in range(17)]
    source = await rbed.fake.user_message(
        rbed.d.images,
        rbed.d.bob,
        "a mood board",
        attachments=[
            FakeAttachment(f"m{i}.png", data, content_type="image/png") for i, data in enumerate(images)
        ],
    )
    it = await rbed.fake.message_command(
        rbed.d.guild, rbed.d.images, rbed.d.alice, "Imagine with these images", source
    )
    cb = await it.callback()
    assert cb.type == 9  # the prompt form
    prompt_field = cb.text_inputs[0]
    job = await rbed.job_of(await rbed.fake.submit_modal(it, {prompt_field: "in this style"}))
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    (request,) = rbed.hub.requests_to(GENERATIONS, "POST")
    assert [r.data for r in request.references] == images[:16]
    (message,) = result_messages(rbed, job)
    assert "16 references" in text_of(message)  # the result says how many were used


async def test_more_references_than_the_model_takes_are_refused(rbed: Bed) -> None:
    rbed.hub.add_model({"id": "two-refs", "reference_image_limit": 2})
    rbed.services.catalog.invalidate()
    balance = rbed.hub.balance(rbed.key)
    refs = tuple(FakeAttachment(f"r{i}.png", png(i), content_type="image/png") for i in range(3))
    it = await rbed.imagine(model="two-refs", attachments=refs)
    assert "at most 2 reference images" in await refusal(it)
    await assert_nothing_spent(rbed, balance)
    assert not [r for r in rbed.fake.requests if r.path.startswith("/attachments/")]  # none downloaded


# -- hub answers -------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: str
    content_type: str = "application/json"


@dataclass
class ScriptedHub:
    """A hub in front of the emulator: answers from `script[kind]` (kinds: models, submit, poll)
    while there are any, else forwards to the emulator."""

    upstream: str
    session: aiohttp.ClientSession
    script: dict[str, list[Answer]] = field(default_factory=dict)
    served: list[str] = field(default_factory=list)

    def kind(self, request: web.Request) -> str:
        if request.path == "/api/v1/models":
            return "models"
        if request.path == GENERATIONS and request.method == "POST":
            return "submit"
        if request.path.startswith("/api/v1/generations/"):
            return "poll"
        return "other"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind = self.kind(request)
        queue = self.script.get(kind)
        if queue:
            answer = queue.pop(0)
            self.served.append(kind)
            return web.Response(status=answer.status, text=answer.body, content_type=answer.content_type)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with self.session.request(
            request.method, self.upstream + request.path_qs, data=await request.read(), headers=headers
        ) as upstream:
            return web.Response(
                status=upstream.status, body=await upstream.read(), content_type=upstream.content_type
            )


@pytest.fixture
async def scripted(rbed: Bed) -> AsyncIterator[ScriptedHub]:
    async with aiohttp.ClientSession() as session:
        hub = ScriptedHub(rbed.hub_url, session)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", hub.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        rbed.services.hubs.base_url = f"http://{host}:{port}"
        rbed.services.catalog.invalidate()
        try:
            yield hub
        finally:
            await runner.cleanup()


HTML_502 = Answer(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
HTML_400 = Answer(400, "<html><body><h1>400 Bad Request</h1></body></html>", "text/html")
NOT_JSON = Answer(200, "OK", "text/plain")


def generation(status: str, images: list[dict[str, Any]] | None = None, **extra: Any) -> Answer:
    return Answer(200, json.dumps({"id": "gen_scripted", "status": status, "images": images or [], **extra}))


async def status_text(it: FakeInteraction, needle: str) -> str:
    message = await it.original(predicate=lambda m: needle in text_of(m))
    return text_of(message)


async def test_model_list_not_json_refuses_cleanly(rbed: Bed, scripted: ScriptedHub) -> None:
    scripted.script["models"] = [NOT_JSON] * 4
    balance = rbed.hub.balance(rbed.key)
    assert "can't be reached" in await refusal(await rbed.imagine())
    await assert_nothing_spent(rbed, balance)
    assert await ledger(rbed) == []


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(NOT_JSON, id="not-json"),
        pytest.param(HTML_502, id="html-502"),
        pytest.param(Answer(202, json.dumps({"status": "queued"})), id="missing-id"),
    ],
)
async def test_unreadable_submission_answers_are_unknown_and_never_resent(
    rbed: Bed, scripted: ScriptedHub, answer: Answer
) -> None:
    """The hub may have taken a request whose answer can't be read: unknown, not resent."""
    scripted.script["submit"] = [answer]
    balance = rbed.hub.balance(rbed.key)
    it = await rbed.imagine()
    job = await rbed.wait_job((await rbed.job_of(it)).id, JobStatus.UNKNOWN)
    assert "can't tell whether it was taken" in await status_text(it, "not completed")
    assert scripted.served == ["submit"] and hub_posts(rbed) == 0
    assert rbed.hub.balance(rbed.key) == balance
    await assert_nothing_held(rbed)  # settled at full cost: the hub may have charged
    assert job.charged_credits is None


async def test_html_error_page_on_submission_refunds_and_tells(rbed: Bed, scripted: ScriptedHub) -> None:
    scripted.script["submit"] = [HTML_400]
    balance = rbed.hub.balance(rbed.key)
    it = await rbed.imagine()
    await rbed.wait_job((await rbed.job_of(it)).id, JobStatus.FAILED)
    text = await status_text(it, "not completed")
    assert "8 credits were returned" in text
    await assert_nothing_spent(rbed, balance)


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param([NOT_JSON, NOT_JSON], id="not-json"),
        pytest.param([HTML_502] * 4, id="html-502"),
        pytest.param([Answer(200, "{}")], id="missing-fields"),
        pytest.param([generation("pondering"), generation("pondering")], id="unknown-status"),
    ],
)
async def test_unreadable_poll_answers_are_retried_and_the_job_completes(
    rbed: Bed, scripted: ScriptedHub, answers: list[Answer]
) -> None:
    scripted.script["poll"] = list(answers)
    job = await rbed.job_of(await rbed.imagine())
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert scripted.served == ["poll"] * len(answers)
    assert hub_posts(rbed) == 1 and len(result_messages(rbed, job)) == 1
    assert await spent(rbed) == 8
    await assert_nothing_held(rbed)


async def test_succeeded_without_images_refunds_and_tells(rbed: Bed, scripted: ScriptedHub) -> None:
    scripted.script["submit"] = [Answer(202, json.dumps({"id": "gen_scripted", "status": "queued"}))]
    scripted.script["poll"] = [generation("succeeded", images=[])]
    balance = rbed.hub.balance(rbed.key)
    it = await rbed.imagine()
    await rbed.wait_job((await rbed.job_of(it)).id, JobStatus.FAILED)
    text = await status_text(it, "not completed")
    assert "couldn't generate" in text and "8 credits were returned" in text
    await assert_nothing_spent(rbed, balance)


# -- the form's image count ---------------------------------------------------------------------------------


def form_fields(cb: Any) -> dict[str, str]:
    """A form's text inputs by label: custom ids (action rows of inputs, or Label components)."""
    fields: dict[str, str] = {}

    def walk(components: list[dict[str, Any]], label: str | None = None) -> None:
        for comp in components:
            if comp.get("type") == 18:  # Label wrapping one component
                walk([comp["component"]], comp.get("label"))
            elif comp.get("type") == 1:
                walk(comp.get("components") or [], label)
            elif comp.get("type") == 4:
                fields[label or comp.get("label", "")] = comp["custom_id"]

    walk(cb.data["components"])
    return fields


@pytest.mark.parametrize(
    "count",
    [
        pytest.param("²", id="superscript-two"),  # isdigit(), but int() raises
        pytest.param("٣", id="arabic-indic-three"),  # isdigit() and int() == 3: not what the form asks
        pytest.param("0", id="zero"),
        pytest.param("5", id="five"),
        pytest.param("-1", id="minus-one"),
        pytest.param("1.", id="one-dot"),
        pytest.param("x", id="letter"),
        pytest.param("１", id="fullwidth-one"),
    ],
)
async def test_the_forms_image_count_accepts_only_1_to_4(rbed: Bed, count: str) -> None:
    balance = rbed.hub.balance(rbed.key)
    source = await rbed.fake.user_message(
        rbed.d.images,
        rbed.d.bob,
        "a mood board",
        attachments=[FakeAttachment("m.png", png(), content_type="image/png")],
    )
    it = await rbed.fake.message_command(
        rbed.d.guild, rbed.d.images, rbed.d.alice, "Imagine with these images", source
    )
    fields = form_fields(await it.callback())
    prompt_field = next(v for k, v in fields.items() if k.startswith("Prompt"))
    count_field = next(v for k, v in fields.items() if "How many" in k)
    submitted = await rbed.fake.submit_modal(it, {prompt_field: "in this style", count_field: count})
    cb = await submitted.callback()
    assert cb.ephemeral and "1 to 4" in text_of(cb), text_of(cb)
    await assert_nothing_spent(rbed, balance)
    assert await ledger(rbed) == []
    assert not [r for r in rbed.fake.requests if r.path.startswith("/attachments/")]  # nothing fetched
