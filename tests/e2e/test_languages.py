"""Members read their own language: English and Vietnamese, end to end through the fake Discord.

The walk goes through every command, button, form, refusal and notice the bot can be made to say
(`walk`) with every member's Discord locale and the server's set, then collects every text the bot
sent (message content, embeds, component labels, modal titles and labels: the bodies of every
request it made, registration aside) and looks for the English catalog's sentences in it. With a
Vietnamese server and members it must find none; the same walk with English ones must find many
(so the check cannot pass by accident). A mixed server (English server, Vietnamese member) gets
Vietnamese ephemeral answers and English public messages, and a status message keeps the
language it started in.
"""

from __future__ import annotations

import io
import re
import string
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from PIL import Image

from bot.jobs import Job, JobStatus
from cogs import i18n
from tests.bed import Bed
from tests.e2e.queue_support import FAST_POLLS, QUICK, custom_ids, status_message, wait_position
from tests.fakediscord.fixtures import assert_clean
from tests.fakediscord.interactions import FakeInteraction
from tests.fakediscord.models import ATTACH_FILES, FakeAttachment, FakeMember, FakeMessage
from tests.fakediscord.server import FakeDiscord

pytestmark = [QUICK, FAST_POLLS]

GENERATIONS = "/api/v1/images/generations"
MODELS = "/api/v1/models"
CREDITS = "/api/v1/credits"
# Keys sent through the bot's requests that are not sentences to a reader.
SENT_KEYS = ("content", "title", "description", "name", "value", "text", "label", "placeholder")
SKIPPED_KEYS = frozenset(
    {"custom_id", "url", "proxy_url", "icon_url", "filename", "nonce", "id", "attachments"}
)


# -- a server in a given language --------------------------------------------------------------


@pytest.fixture
def guild_locale() -> str:
    """The server's language in Discord's settings (tests override it)."""
    return "vi"


@pytest.fixture
async def fake_discord(guild_locale: str) -> AsyncIterator[FakeDiscord]:
    """The default fake Discord, its server set to `guild_locale` before the bot connects (the bot
    learns a server's locale from the gateway)."""
    async with FakeDiscord() as fake:
        fake.setup_default().guild.preferred_locale = guild_locale
        fake.install()
        try:
            yield fake
        finally:
            fake.uninstall()
        assert_clean(fake)


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 40 % 256, 90, 160)).save(out, "PNG")
    return out.getvalue()


# -- what the bot said ---------------------------------------------------------------------------


def _strings(value: Any, key: str | None = None) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in SKIPPED_KEYS:
                yield from _strings(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)
    elif isinstance(value, str) and key in SENT_KEYS:
        yield value


def sent_texts(fake: FakeDiscord) -> list[str]:
    """Every text the bot sent to Discord (command registration aside: that is English by design,
    with its localizations beside it), the hub's own words quoted in them removed."""
    out = []
    for rec in fake.requests:
        if rec.method in ("GET", "DELETE") or "/commands" in rec.path or rec.json is None:
            continue
        for text in _strings(rec.json):
            out.append(re.sub(r"“[^”]*”", "“…”", text))
    return out


def english_sentences() -> dict[str, str]:
    """Each piece of English catalog text between placeholders that says something (a word of four
    letters or more) and differs from the Vietnamese text of the same key: piece → its key."""
    english = i18n.entries(i18n.read_source("en"))
    vietnamese = {  # the words only: a placeholder's name ({quality}) is not Vietnamese text
        key: ["".join(literal for literal, _, _, _ in string.Formatter().parse(form)) for form in forms]
        for key, forms in i18n.entries(i18n.read_source("vi")).items()
    }
    pieces: dict[str, str] = {}
    for key, forms in english.items():
        if key.startswith(("command.", "choice.")):
            continue
        for form in forms:
            for literal, _, _, _ in string.Formatter().parse(form):
                for line in literal.split("\n"):
                    piece = line.strip(" \t.,;:·—()[]*`#\"'“”…⚠️🚫⏳📨🕒🎨📥✅❌❔")
                    if re.search(r"[A-Za-z]{4}", piece) and all(piece not in vi for vi in vietnamese[key]):
                        pieces[piece] = key
    return pieces


def english_found(texts: list[str]) -> dict[str, str]:
    """The English catalog pieces found in `texts` (whole words): piece → key."""
    corpus = "\n".join(texts)
    return {
        piece: key
        for piece, key in english_sentences().items()
        if re.search(rf"(?<![\w-]){re.escape(piece)}(?![\w-])", corpus)
    }


# -- the walk ------------------------------------------------------------------------------------


def forged(message: FakeMessage, custom_id: str) -> FakeMessage:
    """A button the bot never drew, as a tampered client would claim (discord.py only routes ids
    found on the message, so the forged one is put there)."""
    message.components = [
        *message.components[:4],
        {"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": custom_id}]},
    ]
    return message


class Walk:
    """Drives the bot as members with `locale` would, waiting for each answer before the next step."""

    def __init__(self, bed: Bed, locale: str) -> None:
        self.bed = bed
        self.fake = bed.fake
        self.d = bed.d
        self.locale = locale

    async def slash(
        self, member: FakeMember, command: str | list[str], options: dict[str, Any] | None = None, **kw: Any
    ) -> FakeInteraction:
        channel = kw.pop("channel", self.d.images)
        return await self.fake.slash(
            self.d.guild, channel, member, command, options or {}, locale=self.locale, **kw
        )

    async def answered(
        self, member: FakeMember, command: str | list[str], options: dict[str, Any] | None = None, **kw: Any
    ) -> FakeInteraction:
        """A command whose one answer is its callback (an ephemeral reply or a refusal)."""
        it = await self.slash(member, command, options, **kw)
        await it.callback()
        return it

    async def deferred(
        self, member: FakeMember, command: str | list[str], options: dict[str, Any] | None = None
    ) -> FakeInteraction:
        """A command that thinks first and answers with a followup."""
        it = await self.slash(member, command, options)
        await it.followup(0, timeout=10)
        return it

    async def press(self, message: FakeMessage, custom_id: str, member: FakeMember) -> FakeInteraction:
        it = await self.fake.press_button(message, custom_id, member, locale=self.locale)
        await it.callback()
        return it

    async def refused_after_answer(self, it: FakeInteraction) -> None:
        """References are checked after the public answer (their bytes are downloaded then): that
        answer becomes the refusal."""

        def refused() -> bool:
            return "⚠️" in str(it.original_message.embeds if it.original_message else "")

        await self.fake.wait_for(refused, what="the public answer turned into a refusal")

    async def posted(self, it: FakeInteraction) -> tuple[Job, FakeMessage]:
        job = await self.bed.job_of(it)
        job = await self.bed.wait_job(job.id, JobStatus.POSTED)
        return job, await self.bed.result_message(job)

    async def modlog_lines(self, count: int) -> None:
        await self.fake.wait_for(
            lambda: len(self.fake.messages(self.d.mod_log)) >= count,
            what=f"{count} moderator-log lines",
        )


async def walk(bed: Bed, locale: str) -> None:
    """Every command, button, form, refusal and notice, as members whose Discord speaks `locale`."""
    w = Walk(bed, locale)
    d, hub = bed.d, bed.hub
    await w.answered(d.admin, ["config", "modlog"], {"channel": d.mod_log})

    # /imagine, its status and result, for four images and for one
    job4, result4 = await w.posted(await w.slash(d.alice, "imagine", {"prompt": "ngọn hải đăng", "count": 4}))
    job1, result1 = await w.posted(await w.slash(d.alice, "imagine", {"prompt": "con mèo", "count": 1}))

    # where the bot may not attach files: the member is warned, the moderators told
    d.guild.channel(d.general).set_overwrite(d.guild.bot_member.id, type=1, deny=ATTACH_FILES)
    warned = await w.slash(d.alice, "imagine", {"prompt": "không đính kèm được"}, channel=d.general)
    await w.posted(warned)
    await warned.followup(0)
    await w.modlog_lines(1)

    # every button of a result
    await w.press(result4, f"imagine:info:{job4.id}", d.alice)
    await w.posted(await w.fake.press_button(result4, f"imagine:reroll:{job4.id}", d.bob, locale=locale))
    use = await w.fake.press_button(result4, f"imagine:reference:{job4.id}", d.alice, locale=locale)
    form = await use.callback()
    await w.posted(await w.fake.submit_modal(use, {form.text_inputs[0]: "vào mùa đông"}))
    bad_count = await w.fake.press_button(result1, f"imagine:reference:{job1.id}", d.alice, locale=locale)
    form = await bad_count.callback()
    await (
        await w.fake.submit_modal(bad_count, {form.text_inputs[0]: "x", form.text_inputs[3]: "9"})
    ).callback()
    await w.press(result1, f"imagine:delete:{job1.id}", d.bob)  # not theirs: refused
    await w.press(result1, f"imagine:delete:{job1.id}", d.alice)

    # a message's images through the context menu
    source = await w.fake.user_message(d.images, d.bob, "ảnh", attachments=[FakeAttachment("a.png", png(1))])
    menu = await w.fake.message_command(
        d.guild, d.images, d.alice, "Imagine with these images", source, locale=locale
    )
    form = await menu.callback()
    await w.posted(await w.fake.submit_modal(menu, {form.text_inputs[0]: "phong cảnh"}))

    # the queue: waiting, its position, Cancel (refused, too late, done), a full queue
    await w.answered(d.admin, ["config", "limits"], {"per_member": 1, "queue_per_member": 1})
    hub.set_hold(True)
    running = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "đang chạy"}))
    generation = await hub.wait_generation_created(7)  # six posted above, this one held
    queued = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "đang chờ"}))
    await w.answered(d.alice, "imagine", {"prompt": "thêm nữa"})  # the member's queue is full
    await w.answered(d.alice, "history")  # one running, one waiting
    status = status_message(bed, queued)
    await bed.fake.wait_for(lambda: bool(custom_ids(status)), what="the queued job's Cancel button")
    await w.press(status, f"imagine:cancel:{queued.id}", d.bob)
    await w.press(status, f"imagine:cancel:{queued.id}", d.alice)
    await w.press(status_message(bed, running), f"imagine:cancel:{running.id}", d.alice)  # sent: too late
    hub.set_hold(False)
    hub.complete(generation.id)
    await bed.wait_job(running.id, JobStatus.POSTED)

    # results short of images: fewer delivered, one not downloadable
    hub.fewer_images_next(deliver=1)
    await w.posted(await w.slash(d.alice, "imagine", {"prompt": "thiếu ảnh", "count": 2}))
    hub.image_404_next()
    await w.posted(await w.slash(d.alice, "imagine", {"prompt": "ảnh lỗi", "count": 2}))

    # lookups
    await w.answered(d.alice, "quota")
    await w.answered(d.bob, "quota", {"member": d.alice})  # others' need Manage Server
    await w.deferred(d.admin, "credits")
    await w.answered(d.alice, "models")
    await w.answered(d.alice, "history")
    await w.answered(d.bob, "history", {"member": d.alice})
    await w.deferred(d.alice, "show", {"job_id": job4.id})
    await w.answered(d.alice, "show", {"job_id": 999_999})

    # Upscale and Vary of one image, and what they refuse: an image the result lacks, a source still
    # at work, an image the hub no longer serves
    await w.posted(await w.fake.press_button(result4, f"imagine:upscale:{job4.id}:1", d.alice, locale=locale))
    vary, varied = await w.posted(
        await w.fake.press_button(result4, f"imagine:vary:{job4.id}:2", d.bob, locale=locale)
    )
    await w.press(varied, f"imagine:info:{vary.id}", d.bob)  # "made from" image 2 of the first
    await w.press(forged(result4, f"imagine:vary:{job4.id}:7"), f"imagine:vary:{job4.id}:7", d.alice)
    held = len(hub.generations) + 1
    hub.set_hold(True)
    working = await bed.job_of(await w.slash(d.bob, "imagine", {"prompt": "chưa xong"}))
    generation = await hub.wait_generation_created(held)
    status = forged(status_message(bed, working), f"imagine:upscale:{working.id}:1")
    await w.press(status, f"imagine:upscale:{working.id}:1", d.alice)
    hub.set_hold(False)
    hub.complete(generation.id)
    await bed.wait_job(working.id, JobStatus.POSTED)
    hub.image_404_next(2)  # the stored URL, then the one the hub gives again
    gone = await w.fake.press_button(result4, f"imagine:upscale:{job4.id}:3", d.alice, locale=locale)
    await gone.callback()
    await w.refused_after_answer(gone)

    # /settings: shown, a value refused, set, one forgotten, one passed over (its model left the hub)
    await w.answered(d.alice, "settings")
    await w.answered(d.alice, "settings", {"model": "khong-co"})
    await w.answered(d.alice, "settings", {"quality": "high", "count": 2})
    await w.answered(d.alice, "settings", {"reset": "quality"})
    hub.add_model({"id": "tiny-model", "aspect_ratios": ["1:1"], "credits": {"1K": 3}})
    bed.services.catalog.invalidate()
    await w.answered(d.alice, "settings", {"model": "tiny-model"})
    hub.models = [m for m in hub.models if m.id != "tiny-model"]
    bed.services.catalog.invalidate()
    await w.answered(d.alice, "settings")
    passed_over = await w.slash(d.alice, "imagine", {"prompt": "mô hình đã bỏ"})
    await w.posted(passed_over)
    await passed_over.followup(0)

    # private results: ephemeral while the token lives, then by DM; /show refuses them to others
    await w.answered(d.alice, "settings", {"visibility": "private"})
    secret = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "khu vườn bí mật"}))
    await bed.wait_job(secret.id, JobStatus.POSTED)
    await w.answered(d.bob, "show", {"job_id": secret.id})
    held = len(hub.generations) + 1
    hub.set_hold(True)
    late = await w.slash(d.alice, "imagine", {"prompt": "cánh cửa ẩn"})
    late_job = await bed.job_of(late)
    generation = await hub.wait_generation_created(held)
    w.fake.expire_interaction(late)
    hub.set_hold(False)
    hub.complete(generation.id)
    await bed.wait_job(late_job.id, JobStatus.POSTED)
    await w.answered(d.alice, "settings", {"reset": "all"})

    # own keys: /mykey (none, one the hub refuses, set, show), /credits on it, a job it pays,
    # /config personal_keys, and the endings told as her own key's
    await w.answered(d.alice, ["mykey", "show"])
    mine = hub.add_key(credits=500)
    for key in ("gih_live_" + "x" * 32, mine):
        form = await w.slash(d.alice, ["mykey", "set"])
        field = (await form.callback()).text_inputs[0]
        await (await w.fake.submit_modal(form, {field: key})).followup(0)
    await w.answered(d.alice, ["mykey", "show"])
    await w.deferred(d.alice, "credits")
    await w.answered(d.alice, "credits", {"whose": "server"})  # the server's needs Manage Server
    await w.posted(await w.slash(d.alice, "imagine", {"prompt": "khóa của tôi"}))
    await w.answered(d.admin, ["config", "personal_keys"], {"policy": "deny"})
    await w.answered(d.alice, ["mykey", "show"])  # not used on this server
    await w.answered(d.admin, ["config", "personal_keys"], {"policy": "allow"})
    await w.answered(d.admin, ["config", "personal_keys"])
    for key in (hub.add_key(credits=1), "gih_live_" + "z" * 32):  # out of credits, then unknown
        await bed.services.keys.set_personal_key(d.alice.id, key)
        ended = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "khóa riêng hỏng"}))
        await bed.wait_job(ended.id, JobStatus.FAILED)
    await bed.services.keys.set_personal_key(d.alice.id, mine)

    # DMs: without a key (told how to set one), /settings there, and with one (the result by DM)
    await (await w.fake.dm_slash(d.bob, "imagine", {"prompt": "sao chổi"}, locale=locale)).callback()
    await (await w.fake.dm_slash(d.bob, "credits", locale=locale)).callback()
    await (await w.fake.dm_slash(d.bob, "settings", locale=locale)).callback()
    in_dm = await bed.job_of(await w.fake.dm_slash(d.alice, "imagine", {"prompt": "sao chổi"}, locale=locale))
    await bed.wait_job(in_dm.id, JobStatus.POSTED)
    await w.answered(d.alice, ["mykey", "clear"])
    await w.answered(d.alice, ["mykey", "clear"])

    # /config, every subcommand, and what it refuses
    await w.answered(d.admin, ["config", "key", "show"])
    key_form = await w.slash(d.admin, ["config", "key", "set"])
    field = (await key_form.callback()).text_inputs[0]
    await (await w.fake.submit_modal(key_form, {field: "gih_live_" + "x" * 32})).followup(0)  # not the hub's
    key_form = await w.slash(d.admin, ["config", "key", "set"])
    field = (await key_form.callback()).text_inputs[0]
    await (await w.fake.submit_modal(key_form, {field: bed.key})).followup(0)
    await w.answered(d.admin, ["config", "quota", "default"], {"credits": 1000, "period": "week"})
    await w.answered(
        d.admin, ["config", "quota", "role"], {"role": d.guild.roles[d.moderator_role], "credits": 50}
    )
    await w.answered(d.admin, ["config", "quota", "user"], {"member": d.bob, "credits": 20})
    await w.answered(d.admin, ["config", "quota", "exempt"], {"role": d.guild.roles[d.admin_role]})
    await w.answered(d.admin, ["config", "quota", "show"])
    await w.answered(d.admin, ["config", "filter", "add"], {"kind": "word", "value": "cấm"})
    await w.answered(d.admin, ["config", "filter", "add"], {"kind": "word", "value": "a" * 150})
    await w.answered(d.admin, ["config", "filter", "add"], {"kind": "regex", "value": "x{2,9}"})
    await w.answered(d.admin, ["config", "filter", "add"], {"kind": "regex", "value": "(?=x)"})
    await w.answered(d.admin, ["config", "filter", "add"], {"kind": "regex", "value": "(a{50}){50}"})
    await w.answered(d.admin, ["config", "filter", "list"])
    await w.answered(d.admin, ["config", "filter", "remove"], {"kind": "word", "value": "không có"})
    await w.answered(d.admin, ["config", "filter", "remove"], {"kind": "regex", "value": "x{2,9}"})
    await w.answered(d.admin, ["config", "channels"], {"action": "show"})
    await w.answered(d.admin, ["config", "channels"], {"action": "add"})  # no channel picked
    await w.answered(d.admin, ["config", "channels"], {"action": "add", "channel": d.images})
    await w.answered(d.admin, ["config", "defaults"], {"model": "khong-co"})
    await w.answered(d.admin, ["config", "defaults"], {"aspect": "7:3"})
    await w.answered(d.admin, ["config", "defaults"], {"aspect": "1:1"})
    await w.answered(d.admin, ["config", "limits"])
    await w.deferred(d.admin, ["config", "usage"], {"days": 7})
    await w.answered(d.admin, ["config", "language"])
    await w.answered(d.admin, ["config", "alerts"])
    await w.answered(d.admin, ["config", "alerts"], {"low_balance": 1_000_000})
    await w.answered(d.alice, ["config", "limits"], force=True)  # Manage Server only

    # refusals of /imagine
    lines = len(w.fake.messages(d.mod_log))
    await w.answered(d.alice, "imagine", {"prompt": "một thứ bị cấm"})  # blocked, told to the mod log
    await w.modlog_lines(lines + 1)
    await w.answered(d.alice, "imagine", {"prompt": "ở kênh khác"}, channel=d.general)
    await w.answered(d.alice, "imagine", {"prompt": "p", "model": "khong-co"})
    await w.answered(d.alice, "imagine", {"prompt": "p", "aspect": "7:3"})
    await w.answered(d.bob, "imagine", {"prompt": "bốn ảnh", "count": 4})  # over his budget
    text_file = FakeAttachment("ghi-chu.png", b"not an image at all", content_type="image/png")
    await w.refused_after_answer(
        await w.answered(d.alice, "imagine", {"prompt": "p", "reference1": text_file})
    )

    # the hub's errors, and the low-balance alert (the balance is under the alert threshold)
    lines = len(w.fake.messages(d.mod_log))
    hub.fail_next()
    failed = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "hỏng"}))
    await bed.wait_job(failed.id, JobStatus.FAILED)
    hub.http_error_next(1, status=400, paths=[GENERATIONS])
    refused = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "bị từ chối"}))
    await bed.wait_job(refused.id, JobStatus.FAILED)
    await w.posted(await w.slash(d.alice, "imagine", {"prompt": "số dư"}))
    await w.modlog_lines(lines + 1)
    hub.http_error_next(1, status=400, paths=[MODELS])
    bed.services.catalog.invalidate()
    await w.answered(d.alice, "models")
    hub.http_error_next(1, status=400, paths=[CREDITS])
    await w.deferred(d.admin, "credits")

    # more refusals: references, /show, buttons that no longer apply
    empty = FakeAttachment("rong.png", b"", content_type="image/png")
    huge = FakeAttachment("lon.png", png(2), content_type="image/png", size=200 * 1024 * 1024)
    for reference in (empty, huge):
        await w.refused_after_answer(
            await w.answered(d.alice, "imagine", {"prompt": "p", "reference1": reference})
        )
    plain = await w.fake.user_message(d.images, d.bob, "chỉ có chữ")
    await (
        await w.fake.message_command(
            d.guild, d.images, d.alice, "Imagine with these images", plain, locale=locale
        )
    ).callback()
    await w.answered(d.alice, "show", {"job_id": failed.id})  # failed: nothing to show
    await w.answered(d.alice, "show", {"job_id": job4.id}, channel=d.general)  # not where results go
    await w.answered(d.admin, ["config", "filter", "add"], {"kind": "word", "value": " "})
    await w.answered(d.admin, ["config", "filter", "add"], {"kind": "regex", "value": " "})
    await w.answered(d.alice, "history")  # posted, failed, cancelled

    # the hub refuses the server's key, or its balance is too low
    await bed.services.keys.set_key(bed.guild_id, "gih_live_" + "y" * 32, d.admin.id)
    refused_key = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "khóa sai"}))
    await bed.wait_job(refused_key.id, JobStatus.FAILED)
    await w.deferred(d.admin, "credits")
    await bed.services.keys.set_key(bed.guild_id, hub.add_key(credits=1), d.admin.id)
    poor = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "hết tiền"}))
    await bed.wait_job(poor.id, JobStatus.FAILED)
    await bed.services.keys.set_key(bed.guild_id, bed.key, d.admin.id)

    # a budget now applies; settings undone one by one; no key at all
    await w.answered(d.alice, "quota")
    await w.answered(
        d.admin, ["config", "quota", "exempt"], {"role": d.guild.roles[d.admin_role], "exempt": False}
    )
    await w.answered(d.admin, ["config", "quota", "default"])
    await w.answered(d.admin, ["config", "quota", "show"])
    await w.answered(d.admin, ["config", "filter", "remove"], {"kind": "word", "value": "cấm"})
    await w.answered(d.admin, ["config", "filter", "remove"], {"kind": "regex", "value": "zzz"})
    await w.answered(d.admin, ["config", "language"], {"language": "vi" if locale == "vi" else "en"})
    await w.answered(d.admin, ["config", "modlog"])
    await w.answered(d.admin, ["config", "alerts"])
    await w.answered(d.admin, ["config", "key", "clear"])
    await w.answered(d.admin, ["config", "key", "clear"])
    await w.answered(d.admin, ["config", "key", "show"])
    await w.answered(d.alice, "imagine", {"prompt": "không có khóa"})
    await w.answered(d.admin, "credits")
    await bed.services.keys.set_personal_key(d.alice.id, mine)
    await w.answered(d.admin, ["config", "personal_keys"], {"policy": "deny"})
    await w.answered(d.alice, "imagine", {"prompt": "khóa riêng bị tắt"})  # hers refused, the server has none


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.timeout(360)
async def test_no_english_on_the_vietnamese_path(bed: Bed) -> None:
    await walk(bed, "vi")
    texts = sent_texts(bed.fake)
    assert len(texts) > 150
    assert english_found(texts) == {}
    joined = "\n".join(texts)
    for vietnamese in ("Tạo lại", "Dùng làm ảnh tham chiếu", "4 ảnh", "lượt #", "Prompt bị chặn", "tín dụng"):
        assert vietnamese in joined
    # the member features said their part, in Vietnamese
    for vietnamese in (
        "biến thể của ảnh 2 trong lượt #",
        "Lượt tạo ảnh này không có ảnh 7",
        "Mình không lấy lại được ảnh 3",
        "Dự kiến xong",
        "Tùy chỉnh của bạn trên máy chủ này",
        "mặc định của máy chủ",
        "Giá trị mô hình `tiny-model` bạn đã chọn hiện không dùng được",
        "chỉ người tạo mới xem được",
        "Đã lưu khóa `",
        "tín dụng từ khóa riêng của bạn",
        "Khóa API riêng của bạn không đủ tín dụng",
        "Khóa API riêng của bạn không còn hợp lệ",
        "Máy chủ này không dùng khóa API riêng của thành viên",
        "Ở đây mình chỉ tạo ảnh được bằng khóa API riêng của bạn",
        "Máy chủ này không cho dùng khóa API riêng của thành viên",
    ):
        assert vietnamese in joined, vietnamese
    assert {"U1", "U4", "V1", "V4"} <= set(joined.split("\n"))


@pytest.mark.parametrize("guild_locale", ["en-US"])
@pytest.mark.timeout(360)
async def test_the_same_walk_in_english_finds_english_everywhere(bed: Bed) -> None:
    """The check above can fail: an English server and members make it find English in every part."""
    await walk(bed, "en-GB")
    found = english_found(sent_texts(bed.fake))
    kinds = {key.split(".")[0] for key in found.values()}
    assert {"refusal", "denied", "status", "field", "button", "notice", "config", "modlog", "quota"} <= kinds
    assert len(set(found.values())) > 100


@pytest.mark.parametrize("guild_locale", ["en-US"])
async def test_mixed_server_vietnamese_member_english_public(bed: Bed) -> None:
    """English server, Vietnamese member: her ephemeral answers in Vietnamese, public messages in English."""
    w = Walk(bed, "vi")
    d = bed.d
    it = await w.slash(d.alice, "imagine", {"prompt": "ngọn hải đăng", "count": 4})
    job, result = await w.posted(it)
    public = str(result.embeds) + str(result.components)
    assert "Requested by" in public and f"job #{job.id}" in public and "4 images" in public
    assert "Reroll" in public and "Use as reference" in public
    assert vietnamese_found(public) == set()

    info = await w.press(result, f"imagine:info:{job.id}", d.alice)
    quota = await w.answered(d.alice, "quota")
    refused = await w.answered(d.alice, "imagine", {"prompt": "p", "model": "khong-co"})
    for answer in (info, quota, refused):
        callback = await answer.callback()
        assert callback.ephemeral
        assert english_found([str(callback.embeds)]) == {}
    assert "Lượt tạo ảnh #" in str((await info.callback()).embeds)
    assert "Hạn mức tạo ảnh" in str((await quota.callback()).embeds)
    assert "Không có mô hình nào tên" in str((await refused.callback()).embeds)


def vietnamese_found(text: str) -> set[str]:
    """Vietnamese catalog sentences (of four letters or more, differing from the English) in `text`."""
    english = i18n.entries(i18n.read_source("en"))
    found = set()
    for key, forms in i18n.entries(i18n.read_source("vi")).items():
        if key.startswith(("command.", "choice.")):
            continue
        for form in forms:
            for literal, _, _, _ in string.Formatter().parse(form):
                piece = literal.strip(" .,;:·()[]*`#")
                if len(piece) >= 6 and piece not in english[key][0] and piece in text:
                    found.add(piece)
    return found


@pytest.mark.parametrize("guild_locale", ["en-US"])
async def test_a_status_message_keeps_the_language_it_started_in(bed: Bed) -> None:
    """A job launched while the server spoke English is finished in English after a moderator
    switches the server to Vietnamese; the next job speaks Vietnamese."""
    w = Walk(bed, "en-US")
    d = bed.d
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_guild=1)
    bed.hub.set_hold(True)
    first = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "one"}))
    generation = await bed.hub.wait_generation_created(1)
    waiting = await bed.job_of(await w.slash(d.bob, "imagine", {"prompt": "two"}))
    await wait_position(bed, waiting, 1)
    assert first.locale == waiting.locale == "en"

    await w.answered(d.admin, ["config", "language"], {"language": "vi"})
    bed.hub.set_hold(False)
    bed.hub.complete(generation.id)
    for job in (first, waiting):
        done = await bed.wait_job(job.id, JobStatus.POSTED)
        message = await bed.result_message(done)
        assert f"job #{job.id}" in str(message.embeds) and "Requested by" in str(message.embeds)
        assert "Reroll" in str(message.components)
    third, message = await w.posted(await w.slash(d.alice, "imagine", {"prompt": "three"}))
    assert third.locale == "vi"
    assert f"lượt #{third.id}" in str(message.embeds) and "Tạo lại" in str(message.components)


@pytest.mark.parametrize(
    ("guild_locale", "one", "four"),
    [("en-US", "· 1 image", "· 4 images"), ("vi", "· 1 ảnh", "· 4 ảnh")],
)
async def test_results_count_one_and_four_images_in_the_server_s_language(
    bed: Bed, guild_locale: str, one: str, four: str
) -> None:
    w = Walk(bed, guild_locale)
    for count, expected in ((1, one), (4, four)):
        _, result = await w.posted(await w.slash(bed.d.alice, "imagine", {"prompt": "đếm", "count": count}))
        settings = [
            f["value"] for e in result.embeds for f in e.get("fields") or [] if "`gpt-image-2`" in f["value"]
        ]
        assert len(settings) == 1 and settings[0].endswith(expected), settings


@pytest.mark.parametrize("guild_locale", ["en-US"])
async def test_a_private_result_speaks_its_member_s_language_on_an_english_server(bed: Bed) -> None:
    """Only its member reads a private result (ephemeral, else a DM): it is in her language, not the
    server's; a member whose results are public still gets the server's language."""
    w = Walk(bed, "vi")
    d = bed.d
    await w.answered(d.alice, "settings", {"visibility": "private"})
    job = await bed.job_of(await w.slash(d.alice, "imagine", {"prompt": "khu vườn bí mật"}))
    job = await bed.wait_job(job.id, JobStatus.POSTED)
    assert job.private and job.locale == "vi"
    (posted,) = [m for m in bed.fake.messages(d.images, include_ephemeral=True) if m.attachments]
    assert posted.ephemeral and f"lượt #{job.id}" in str(posted.embeds)
    assert "Tạo lại" in str(posted.components)
    assert english_found([str(posted.embeds)]) == {}
    shown = await (await w.deferred(d.alice, "show", {"job_id": job.id})).followup(0)
    assert shown.ephemeral and f"lượt #{job.id}" in str(shown.embeds) and "Tạo lại" in str(shown.components)

    public, result = await w.posted(await w.slash(d.bob, "imagine", {"prompt": "công khai"}))
    assert public.locale == "en" and f"job #{public.id}" in str(result.embeds)
