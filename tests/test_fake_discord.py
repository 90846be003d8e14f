"""Proof that the fake Discord (tests.fakediscord) works with the real discord.py client.

A small AutoShardedBot defined here (not the product's bot) logs into the fake and every interaction kind is
round-tripped: slash options + attachment, subcommand groups, default permissions, a message context menu
opening a modal, a persistent button, defer + edit + followup, autocomplete, channel posts with files; plus
429 retries, the 3 s rule, expired tokens, upload limits, missing channels/permissions, RESUME, two shards and
a bot in a subprocess that is SIGKILLed and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakediscord import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    FLAG_EPHEMERAL,
    MANAGE_GUILD,
    FakeAttachment,
    FakeDiscord,
    fixtures,
)
from tests.fakediscord.fixtures import assert_clean

fake_discord = fixtures.fake_discord  # the fixture, re-exported for this module

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)
FRUITS = ["apple", "apricot", "banana", "cherry"]


class NoteModal(discord.ui.Modal, title="Describe this message"):
    note: discord.ui.TextInput[NoteModal] = discord.ui.TextInput(
        label="Note", custom_id="note", max_length=100
    )

    def __init__(self, target: discord.Message) -> None:
        super().__init__(custom_id="proof:note-modal")
        self.target = target

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            f"note={self.note.value} attachments={len(self.target.attachments)}"
        )


class PanelView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Toggle", custom_id="proof:toggle", style=discord.ButtonStyle.primary)
    async def toggle(self, interaction: discord.Interaction, button: discord.ui.Button[PanelView]) -> None:
        button.label = "Toggled"
        await interaction.response.edit_message(content="toggled", view=self)

    @discord.ui.button(label="Later", custom_id="proof:later")
    async def later(self, interaction: discord.Interaction, button: discord.ui.Button[PanelView]) -> None:
        await interaction.response.defer()  # deferred update (callback type 6)
        await interaction.edit_original_response(content="edited later")


class ProofBot(commands.AutoShardedBot):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=kwargs.pop("intents", discord.Intents.default()),
            guild_ready_timeout=0.05,
            **kwargs,
        )
        self.results: list[Any] = []  # outcomes the commands record for the tests
        self.gate = asyncio.Event()
        self.changed = asyncio.Event()

    def record(self, item: Any) -> None:
        self.results.append(item)
        self.changed.set()

    async def wait_result(self, n: int = 1, timeout: float = 5.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.results) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.results

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # no 5 s sleep before the second shard's IDENTIFY

    async def setup_hook(self) -> None:
        self.add_view(PanelView())
        add_commands(self)
        await self.tree.sync()


def add_commands(bot: ProofBot) -> None:
    tree = bot.tree

    @tree.command(description="Echo an image back, reversed")
    @app_commands.describe(text="Text", image="An image", count="How many")
    async def echo(
        interaction: discord.Interaction,
        text: str,
        image: discord.Attachment,
        count: app_commands.Range[int, 1, 3] = 1,
    ) -> None:
        data = await image.read()
        try:
            await interaction.response.send_message(
                f"{text} x{count} {image.content_type} declared={image.size} got={len(data)}",
                file=discord.File(io.BytesIO(data[::-1]), "reversed.bin"),
            )
        except discord.HTTPException as exc:
            bot.record(exc)

    config = app_commands.Group(name="config", description="Configuration")
    key = app_commands.Group(name="key", description="Hub key", parent=config)

    @key.command(name="set", description="Set the key")
    async def key_set(interaction: discord.Interaction, value: str) -> None:
        await interaction.response.send_message(f"set {value}", ephemeral=True)

    @key.command(name="show", description="Show the key")
    async def key_show(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("shown", ephemeral=True)

    tree.add_command(config)

    @tree.command(description="Admins only")
    @app_commands.default_permissions(manage_guild=True)
    async def admin(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("admin ok", ephemeral=True)

    @tree.context_menu(name="Describe")
    async def describe(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_modal(NoteModal(message))

    @tree.command(description="Post the panel")
    async def panel(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("panel", view=PanelView())

    @tree.command(description="Deferred work")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="done")
        await interaction.followup.send("extra", ephemeral=True)

    @tree.command(description="Pick a fruit")
    async def pick(interaction: discord.Interaction, fruit: str) -> None:
        await interaction.response.send_message(f"picked {fruit}")

    @pick.autocomplete("fruit")
    async def pick_autocomplete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=f, value=f) for f in FRUITS if f.startswith(current)]

    @tree.command(description="Post a file to a channel")
    async def post(interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        await interaction.response.send_message("posting", ephemeral=True)
        target = bot.get_channel(channel.id) if channel else interaction.channel
        assert isinstance(target, discord.TextChannel)
        try:
            msg = await target.send("here", file=discord.File(io.BytesIO(PNG), "out.png"))
        except discord.HTTPException as exc:
            bot.record(exc)
        else:
            bot.record(msg)

    @tree.command(description="Reply to a message, reusing its attachment")
    async def reuse(interaction: discord.Interaction, message_id: str) -> None:
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel)
        await interaction.response.defer(ephemeral=True)
        source = await channel.fetch_message(int(message_id))
        data = await source.attachments[0].read()
        history = [m async for m in channel.history(limit=10)]
        reply = await channel.send(
            f"{len(data)} bytes, {len(history)} in history",
            file=discord.File(io.BytesIO(data), "again.png"),
            reference=source,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        bot.record(reply)
        await interaction.followup.send("reused")

    @tree.command(description="Too slow")
    async def sleepy(interaction: discord.Interaction) -> None:
        await asyncio.sleep(3.2)
        for attempt in (interaction.response.send_message, interaction.followup.send):
            try:
                await attempt("late")
            except discord.HTTPException as exc:
                bot.record(exc)

    @tree.command(description="Waits for the test")
    async def wait(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await bot.gate.wait()
        try:
            await interaction.followup.send("after the wait")
        except discord.HTTPException as exc:
            bot.record(exc)

    @tree.command(description="Defer, delete the thinking message, then follow up")
    async def vanish(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.delete_original_response()
        bot.record(await interaction.followup.send("after the delete", wait=True))

    @tree.command(description="Which shard")
    async def where(interaction: discord.Interaction) -> None:
        assert interaction.guild is not None
        await interaction.response.send_message(f"shard={interaction.guild.shard_id}")


@contextlib.asynccontextmanager
async def running(
    bot: commands.AutoShardedBot, fake: FakeDiscord, shards: int | None = None
) -> AsyncIterator[None]:
    task = asyncio.create_task(bot.start(fake.token))
    try:
        await fake.wait_ready(shards, timeout=10)
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        yield
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def bot(fake_discord: FakeDiscord) -> AsyncIterator[ProofBot]:
    proof = ProofBot()
    async with running(proof, fake_discord):
        await fake_discord.wait_commands_synced()
        yield proof


# ------------------------------------------------------------------------------------------------------------
async def test_login_ready_and_guild_state(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    assert bot.user is not None and bot.user.id == fake_discord.bot_user.id
    assert bot.application_id == fake_discord.application_id
    guild = bot.get_guild(setup.guild_id)
    assert guild is not None and guild.owner_id == setup.owner.id
    assert {c.name for c in guild.text_channels} == {"general", "images", "mod-log"}
    assert {r.name for r in guild.roles} >= {"@everyone", "Admin", "Moderator"}
    assert guild.member_count == 6 and [m.id for m in guild.members] == [bot.user.id]  # no presences intent
    assert guild.me.guild_permissions.value == DEFAULT_BOT_PERMISSIONS | DEFAULT_EVERYONE_PERMISSIONS
    assert guild.me.guild_permissions.value == setup.guild.bot_member.permissions
    general = guild.get_channel(setup.general)
    assert isinstance(general, discord.TextChannel)
    assert general.permissions_for(guild.me).attach_files
    session = fake_discord.sessions[0]
    assert session.conn is not None and session.conn.requested_compress in ("zlib-stream", "zstd-stream")
    assert [r.route for r in fake_discord.requests[:2]] == ["GET /users/@me", "GET /oauth2/applications/@me"]


async def test_commands_registered(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    commands_ = {c["name"]: c for c in fake_discord.commands()}
    assert set(commands_) == {
        "echo",
        "config",
        "admin",
        "Describe",
        "panel",
        "slow",
        "pick",
        "post",
        "reuse",
        "sleepy",
        "wait",
        "where",
        "vanish",
    }
    assert commands_["admin"]["default_member_permissions"] == str(MANAGE_GUILD)
    assert commands_["echo"]["default_member_permissions"] is None
    echo_options = {o["name"]: o for o in commands_["echo"]["options"]}
    assert echo_options["image"]["type"] == 11 and echo_options["image"]["required"]
    assert echo_options["count"]["min_value"] == 1 and echo_options["count"]["max_value"] == 3
    assert commands_["Describe"]["type"] == 3
    (key,) = commands_["config"]["options"]
    assert key["type"] == 2 and {o["name"] for o in key["options"]} == {"set", "show"}
    assert commands_["pick"]["options"][0]["autocomplete"] is True
    (sync,) = fake_discord.command_syncs
    assert sync.guild_id is None and len(sync.payload) == 13


async def test_slash_with_attachment_round_trip(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    # the declared content type and size lie about the bytes, as a test may want
    lying = FakeAttachment("cat.png", b"definitely not a png", content_type="image/png", size=999_999)
    it = await fake_discord.slash(
        setup.guild_id, setup.general, setup.alice, "echo", {"text": "hi", "count": 2}, attachments=[lying]
    )
    cb = await it.callback()
    assert cb.accepted and cb.type == 4
    assert cb.content == "hi x2 image/png declared=999999 got=20"
    assert cb.attachments[0].filename == "reversed.bin"
    assert cb.attachments[0].data == b"definitely not a png"[::-1]
    original = await it.original()
    assert original.attachments[0].data == b"definitely not a png"[::-1]
    assert original.interaction_metadata is not None and original.interaction_metadata["name"] == "echo"
    assert fake_discord.messages(setup.general, source="interaction") == [original]
    with pytest.raises(ValueError, match="max_value"):
        await fake_discord.slash(
            setup.guild_id,
            setup.general,
            setup.alice,
            "echo",
            {"text": "hi", "count": 9},
            attachments=[lying],
        )
    with pytest.raises(ValueError, match="required"):
        await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "echo", {"text": "hi"})


async def test_subcommand_group_and_default_permissions(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    it = await fake_discord.slash(
        setup.guild_id, setup.general, setup.admin, ["config", "key", "set"], {"value": "k"}
    )
    cb = await it.callback()
    assert cb.content == "set k" and cb.ephemeral and cb.flags & FLAG_EPHEMERAL
    assert fake_discord.messages(setup.general) == []  # ephemeral: not in the channel
    it = await fake_discord.slash(setup.guild_id, setup.general, setup.admin, "config", {"key": {"show": {}}})
    assert (await it.callback()).content == "shown"

    with pytest.raises(PermissionError):
        await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "admin")
    for member in (setup.admin, setup.owner):
        it = await fake_discord.slash(setup.guild_id, setup.general, member, "admin")
        assert (await it.callback()).content == "admin ok"


async def test_message_context_menu_opens_modal(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    target = await fake_discord.user_message(
        setup.images, setup.bob, "look", attachments=[FakeAttachment("a.png", PNG)]
    )
    it = await fake_discord.message_command(setup.guild_id, setup.images, setup.alice, "Describe", target)
    cb = await it.callback()
    assert cb.type == 9 and cb.custom_id == "proof:note-modal" and cb.title == "Describe this message"
    with pytest.raises(ValueError, match="required"):
        await fake_discord.submit_modal(it, {})
    submit = await fake_discord.submit_modal(it, {"note": "nice"})
    answer = await submit.callback()
    assert answer.type == 4 and answer.content == "note=nice attachments=1"


async def test_persistent_button_edits_message(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    it = await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "panel")
    panel = await it.original()
    assert panel.custom_ids == ["proof:toggle", "proof:later"]
    press = await fake_discord.press_button(panel, "proof:toggle", setup.bob)
    cb = await press.callback()
    assert cb.type == 7
    assert panel.content == "toggled" and (panel.find_component("proof:toggle") or {})["label"] == "Toggled"
    assert [e.source for e in panel.edits] == ["callback"]
    with pytest.raises(LookupError):
        await fake_discord.press_button(panel, "nope", setup.bob)

    press = await fake_discord.press_button(panel, "proof:later", setup.bob)
    assert (await press.callback()).type == 6
    assert (await press.original()) is panel and panel.content == "edited later"
    assert [e.source for e in panel.edits] == ["callback", "webhook"]


async def test_deferred_edit_and_followup(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    it = await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "slow")
    cb = await it.callback()
    assert cb.type == 5
    original = await it.original()
    assert original.content == "done" and not original.loading
    followup = await it.followup(0)
    assert followup.content == "extra" and followup.ephemeral and followup is not original
    assert [e["content"] for e in it.edits] == ["done"]

    # the same token, used directly: edit the followup, delete the original, then both are gone
    import aiohttp

    hook = f"{fake_discord.api_base}/webhooks/{fake_discord.application_id}/{it.token}"
    async with aiohttp.ClientSession() as http:
        async with http.patch(f"{hook}/messages/{followup.id}", json={"content": "patched"}) as resp:
            assert resp.status == 200 and (await resp.json())["content"] == "patched"
        async with http.delete(f"{hook}/messages/@original") as resp:
            assert resp.status == 204
        async with http.get(f"{hook}/messages/@original") as resp:
            assert resp.status == 404 and (await resp.json())["code"] == 10008
    assert followup.content == "patched" and followup.edits[0].source == "webhook"
    assert original.deleted and fake_discord.messages(setup.general) == []


async def test_autocomplete(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    choices = await fake_discord.autocomplete(
        setup.guild_id, setup.general, setup.alice, "pick", {"fruit": "ap"}, focused="fruit"
    )
    assert choices == [{"name": "apple", "value": "apple"}, {"name": "apricot", "value": "apricot"}]


async def test_channel_post_with_file_survives_429(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    rule = fake_discord.fail_next(1, 429, route_contains=f"/channels/{setup.general}/messages", method="POST")
    it = await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "post")
    assert (await it.callback()).ephemeral
    (sent,) = await bot.wait_result()
    assert isinstance(sent, discord.Message)
    msg = await fake_discord.wait_message(setup.general)
    assert msg.id == sent.id and msg.content == "here"
    assert msg.attachments[0].filename == "out.png" and msg.attachments[0].data == PNG
    assert msg.attachments[0].content_type == "image/png"
    assert rule.hits == 1
    posts = [r for r in fake_discord.requests if r.route == f"POST /channels/{setup.general}/messages"]
    assert [r.status for r in posts] == [429, 200]
    assert len(fake_discord.messages(setup.general, source="channel")) == 1


async def test_missing_channel_permissions_and_upload_limit(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    await fake_discord.deny_send(setup.images)
    await fake_discord.delete_channel(setup.mod_log)
    it = await fake_discord.slash(
        setup.guild_id, setup.general, setup.alice, "post", {"channel": setup.images}
    )
    (denied,) = await bot.wait_result(1)
    assert isinstance(denied, discord.Forbidden) and denied.code == 50013
    mod_log = bot.get_channel(setup.mod_log)
    assert mod_log is None  # CHANNEL_DELETE reached the bot
    images = bot.get_channel(setup.images)
    assert isinstance(images, discord.TextChannel)
    assert not images.permissions_for(images.guild.me).send_messages  # CHANNEL_UPDATE reached the bot

    setup.guild.upload_limit_override = 64
    it = await fake_discord.slash(
        setup.guild_id,
        setup.general,
        setup.alice,
        "echo",
        {"text": "big"},
        attachments=[FakeAttachment("big.bin", b"x" * 100)],
    )
    cb = await it.callback()
    assert cb.status == 413 and cb.error == {"message": "Request entity too large", "code": 40005}
    _, too_large = await bot.wait_result(2)
    assert isinstance(too_large, discord.HTTPException) and too_large.code == 40005
    assert it.payload["attachment_size_limit"] == 64


async def test_first_callback_after_three_seconds_is_refused(
    fake_discord: FakeDiscord, bot: ProofBot
) -> None:
    setup = fake_discord.default
    assert setup is not None
    it = await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "sleepy")
    cb = await it.callback(timeout=6)
    assert cb.status == 404 and cb.error is not None and cb.error["code"] == 10062 and it.dead
    late, followup = await bot.wait_result(2)
    assert isinstance(late, discord.NotFound) and late.code == 10062
    assert isinstance(followup, discord.NotFound) and followup.code == 10015
    assert fake_discord.messages(setup.general, include_ephemeral=True) == []


async def test_first_followup_replaces_the_thinking_message(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    it = await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "wait")
    assert (await it.callback()).type == 5
    assert it.original_message is not None and it.original_message.loading
    bot.gate.set()
    original = await it.original()
    assert original.content == "after the wait" and not original.loading
    assert it.followups == [original] and it.edits == []


async def test_expired_token_fails_followups(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    it = await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "wait")
    assert (await it.callback()).type == 5
    fake_discord.expire_interaction(it)
    bot.gate.set()
    (error,) = await bot.wait_result()
    assert isinstance(error, discord.HTTPException) and error.status == 401 and error.code == 50027
    assert it.followups == []


async def test_resume_after_dropped_connection(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    session = fake_discord.sessions[0]
    await fake_discord.drop_shard(0)
    await fake_discord.wait_for(lambda: session.resumes == 1 and session.connected, 10, what="a RESUME")
    assert fake_discord.identify_count == 1
    it = await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "where")
    assert (await it.callback()).content == "shard=0"


async def test_two_shards_get_their_own_guilds() -> None:
    async with FakeDiscord() as fake:
        g0 = fake.add_guild("zero", shard=(0, 2))
        g1 = fake.add_guild("one", shard=(1, 2))
        c0, c1 = g0.add_channel("general"), g1.add_channel("general")
        fake.install()
        try:
            proof = ProofBot(shard_count=2, intents=discord.Intents.all())  # members intent: chunking
            async with running(proof, fake, shards=2):
                s0, s1 = await fake.wait_ready(2)
                assert (s0.shard_id, s0.guild_ids) == (0, [g0.id])
                assert (s1.shard_id, s1.guild_ids) == (1, [g1.id])
                assert {g.id: g.shard_id for g in proof.guilds} == {g0.id: 0, g1.id: 1}
                assert all(g.chunked and len(g.members) == 2 for g in proof.guilds)
                await fake.wait_commands_synced()
                for guild, channel, shard in ((g0, c0, 0), (g1, c1, 1)):
                    it = await fake.slash(guild.id, channel, guild.owner, "where")
                    assert (await it.callback()).content == f"shard={shard}"
                    assert fake.sessions[shard].events.count("INTERACTION_CREATE") == 1
        finally:
            fake.uninstall()
        assert_clean(fake)


SUBPROCESS_BOT = textwrap.dedent(
    """
    import os

    import discord
    from discord.ext import commands


    class Bot(commands.AutoShardedBot):
        async def setup_hook(self):
            await self.tree.sync()


    bot = Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)


    @bot.tree.command(description="Ping")
    async def ping(interaction: discord.Interaction):
        await interaction.response.send_message(f"pong from {os.getpid()}")


    bot.run(os.environ["FAKE_BOT_TOKEN"], log_handler=None)
    """
)


async def test_subprocess_bot_killed_and_restarted(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    setup = fake_discord.default
    assert setup is not None
    script = tmp_path / "bot.py"
    script.write_text(SUBPROCESS_BOT)
    env = fake_discord.subprocess_env()
    env["FAKE_BOT_TOKEN"] = fake_discord.token

    async def start(n: int) -> asyncio.subprocess.Process:
        with (tmp_path / f"bot{n}.log").open("wb") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, str(script), env=env, stdout=log, stderr=log
            )

    procs: list[asyncio.subprocess.Process] = []
    try:
        for round_ in range(2):
            since = fake_discord.identify_count
            proc = await start(round_)
            procs.append(proc)
            await fake_discord.wait_ready(timeout=20, since=since)
            it = await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "ping")
            assert (await it.callback(timeout=10)).content == f"pong from {proc.pid}"
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await fake_discord.wait_disconnected()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert fake_discord.identify_count == 2
    assert len(fake_discord.command_syncs) == 2


async def test_reply_reusing_a_posted_attachment(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    setup = fake_discord.default
    assert setup is not None
    it = await fake_discord.slash(setup.guild_id, setup.general, setup.alice, "post")
    (posted,) = await bot.wait_result()
    source = await fake_discord.wait_message(setup.general)
    it = await fake_discord.slash(
        setup.guild_id, setup.general, setup.alice, "reuse", {"message_id": str(posted.id)}
    )
    assert (await it.followup()).content == "reused"
    reply = await fake_discord.wait_message(setup.general, after=source)
    assert reply.content == f"{len(PNG)} bytes, 1 in history"
    assert reply.attachments[0].data == PNG and reply.attachments[0].filename == "again.png"
    assert reply.message_reference is not None and reply.message_reference["message_id"] == str(source.id)
    assert reply.type == 19 and reply.allowed_mentions == {"parse": []}
    downloads = [r for r in fake_discord.requests if r.path.startswith("/attachments/")]
    assert downloads and downloads[-1].path.endswith("/out.png")


async def test_unknown_routes_faults_and_downloads_raw(fake_discord: FakeDiscord) -> None:
    import aiohttp

    att = fake_discord.register_attachment(
        FakeAttachment("x.png", b"GIF89a", content_type="image/png", served_content_type="image/gif")
    )
    auth = {"Authorization": f"Bot {fake_discord.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(att.signed_url) as resp:
            assert resp.status == 200 and resp.content_type == "image/gif" and await resp.read() == b"GIF89a"
        async with http.get(f"{fake_discord.api_base}/users/@me") as resp:
            assert resp.status == 401
        fake_discord.fail_next(1, 503, route_contains="/users/@me")
        async with http.get(f"{fake_discord.api_base}/users/@me", headers=auth) as resp:
            assert resp.status == 503 and resp.headers["Content-Type"] == "application/json"
        fake_discord.fail_next(1, 429, route_contains="/users/@me", retry_after=0.25)
        async with http.get(f"{fake_discord.api_base}/users/@me", headers=auth) as resp:
            assert resp.status == 429 and (await resp.json())["retry_after"] == 0.25
            assert resp.headers["Via"] and resp.headers["X-RateLimit-Remaining"] == "0"
        async with http.get(f"{fake_discord.api_base}/users/@me", headers=auth) as resp:
            assert resp.status == 200 and (await resp.json())["id"] == str(fake_discord.bot_user.id)
        async with http.get(f"{fake_discord.api_base}/voice/regions", headers=auth) as resp:
            assert resp.status == 404 and await resp.json() == {"message": "404: Not Found", "code": 0}
    assert [r.route for r in fake_discord.unknown_routes] == ["GET /voice/regions"]
    fake_discord.unknown_routes.clear()


# -- Discord's official spec and documented rules (issue: real Discord, not only our fake) -------------------


@contextlib.asynccontextmanager
async def raw_api(fake: FakeDiscord) -> AsyncIterator[Any]:
    """An aiohttp session speaking to the fake's API as the bot would (bot token), without discord.py."""
    import aiohttp

    async with aiohttp.ClientSession(
        base_url=fake.url, headers={"Authorization": f"Bot {fake.token}"}
    ) as http:
        yield http


def _multipart(payload: dict[str, Any], files: list[tuple[str, bytes]]) -> Any:
    import aiohttp

    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", json.dumps(payload), content_type="application/json")
    for i, (name, data) in enumerate(files):
        form.add_field(f"files[{i}]", data, filename=name, content_type="image/png")
    return form


def _integer_command(max_value: int) -> list[dict[str, Any]]:
    option = {"type": 4, "name": "job_id", "description": "job", "required": True, "min_value": 1}
    return [
        {"name": "show", "description": "Show", "type": 1, "options": [{**option, "max_value": max_value}]}
    ]


async def test_spec_validation_refuses_bad_bodies_and_fails_the_test(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    d = fake.default
    assert d is not None
    app = f"/api/v10/applications/{fake.application_id}/commands"
    callback = "/api/v10/interactions/123/not-a-token/callback"
    async with raw_api(fake) as http:
        # The documented INTEGER range ends at 2**53 - 1; one more refuses the whole bulk overwrite.
        async with http.put(app, json=_integer_command(2**53)) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["code"] == 50035 and body["message"] == "Invalid Form Body"
            error = body["errors"]["0"]["options"]["0"]["max_value"]["_errors"][0]
            assert error["code"] == "NUMBER_TYPE_MAX" and "9007199254740991" in error["message"]
        async with http.put(app, json=_integer_command(2**53 - 1)) as resp:
            assert resp.status == 200 and (await resp.json())[0]["options"][0]["max_value"] == 2**53 - 1

        # Autocomplete choice names: 1 to 100 characters (judged before the interaction is even looked up).
        choices = {"type": 8, "data": {"choices": [{"name": "x" * 101, "value": "x"}]}}
        async with http.post(callback, json=choices) as resp:
            body = await resp.json()
            assert resp.status == 400
            assert (
                body["errors"]["data"]["choices"]["0"]["name"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
            )
        choices["data"]["choices"][0]["name"] = "x" * 100
        async with http.post(callback, json=choices) as resp:
            assert resp.status == 404 and (await resp.json())["code"] == 10062  # valid: reached the handler

        # An embed description of 4097 characters.
        message = {"type": 4, "data": {"embeds": [{"title": "t", "description": "d" * 4097}]}}
        async with http.post(callback, json=message) as resp:
            body = await resp.json()
            assert resp.status == 400
            assert "description" in body["errors"]["data"]["embeds"]["0"]

        # 11 files (discord.py lists each in ``attachments``: at most 10), in multipart payload_json.
        files = [(f"f{i}.png", PNG) for i in range(11)]
        payload = {
            "content": "many",
            "attachments": [{"id": i, "filename": n} for i, (n, _) in enumerate(files)],
        }
        async with http.post(
            f"/api/v10/channels/{d.general}/messages", data=_multipart(payload, files)
        ) as resp:
            body = await resp.json()
            assert resp.status == 400 and "attachments" in body["errors"]
        assert not fake.messages(d.general)

        # Snowflakes sent as integers are normalised (only those): a reply with an int message id is valid.
        first = await fake.user_message(d.general, d.alice, "hello")
        reply = {"content": "hi", "message_reference": {"message_id": first.id, "fail_if_not_exists": False}}
        async with http.post(f"/api/v10/channels/{d.general}/messages", json=reply) as resp:
            assert resp.status == 200
        async with http.post(f"/api/v10/channels/{d.general}/messages", json={"content": 5}) as resp:
            assert resp.status == 400  # an integer where the spec wants a string is not coerced

        # A route the spec does not know is recorded (and fails the test) even though the fake answers it.
        async with http.get("/api/v10/voice/regions-of-mars") as resp:
            assert resp.status == 404
    fake.unknown_routes.clear()

    assert [b.source for b in fake.invalid_bodies] == ["spec"] * 5
    assert [r.route for r in fake.unspecced_routes] == ["GET /voice/regions-of-mars"]
    with pytest.raises(AssertionError, match="OpenAPI spec does not know"):
        assert_clean(fake)
    fake.unspecced_routes.clear()
    with pytest.raises(AssertionError, match="Discord would refuse these bodies"):
        assert_clean(fake)
    fake.invalid_bodies.clear()
    # Every body was judged (the refused ones by the worker, with their errors).
    assert len(fake.spec_check_seconds) == 8  # every body (GETs carry none)


async def test_a_command_for_user_installs_needs_the_application_to_support_them(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    app = f"/api/v10/applications/{fake.application_id}/commands"
    user_installed = [{**_integer_command(5)[0], "integration_types": [0, 1], "contexts": [0, 1, 2]}]
    async with raw_api(fake) as http:
        fake.app_integration_types = {0}  # User Install not enabled in the Developer Portal
        async with http.get("/api/v10/applications/@me") as resp:
            assert (await resp.json())["integration_types_config"] == {"0": {}}
        async with http.put(app, json=user_installed) as resp:
            body = await resp.json()
            assert resp.status == 400 and "integration_types" in body["errors"]["0"]
        fake.app_integration_types = {0, 1}
        async with http.put(app, json=user_installed) as resp:
            assert resp.status == 200 and (await resp.json())[0]["integration_types"] == [0, 1]
    fake.invalid_bodies.clear()


async def test_upload_limits_per_file_per_request_and_count(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    boosted = fake.add_guild("Boosted", premium_tier=2)  # 50 MiB per file
    channel = boosted.add_channel("art")
    mib = 1024 * 1024
    small = fake.default
    assert small is not None and small.guild.upload_limit == 10 * mib

    async def post(channel_id: int, sizes: list[int]) -> int:
        files = [(f"f{i}.png", b"\0" * size) for i, size in enumerate(sizes)]
        payload = {"attachments": [{"id": i, "filename": n} for i, (n, _) in enumerate(files)]}
        async with raw_api(fake) as http:
            url = f"/api/v10/channels/{channel_id}/messages"
            async with http.post(url, data=_multipart(payload, files)) as resp:
                return resp.status

    assert await post(small.general, [10 * mib + 1]) == 413  # one file over the guild's per-file limit
    assert await post(small.general, [9 * mib, 9 * mib]) == 200  # each under 10 MiB, 18 MiB together
    assert await post(channel, [20 * mib]) == 200  # tier 2 allows a 20 MiB file
    assert await post(channel, [9 * mib, 9 * mib, 8 * mib]) == 413  # 26 MiB in one request: over 25 MiB
    assert await post(small.general, [10] * 10) == 200
    assert await post(small.general, [10] * 11) == 400  # at most 10 attachments
    fake.invalid_bodies.clear()


async def test_the_bots_channel_permissions_on_rest_calls(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    from tests.fakediscord import ATTACH_FILES, EMBED_LINKS, READ_MESSAGE_HISTORY, SEND_MESSAGES, VIEW_CHANNEL

    fake = fake_discord
    d = fake.default
    assert d is not None
    channel = fake.channel(d.general)
    bot_id = fake.bot_user.id
    target = await fake.user_message(d.general, d.alice, "to reply to")
    url = f"/api/v10/channels/{d.general}/messages"
    (rule,) = [r for r in fake.rate_limits.routes if r.name == "message-create"]
    rule.limit = 100  # this test is about permissions, not the 5-per-5-s bucket

    async def status(deny: int, body: dict[str, Any], files: int = 0) -> tuple[int, Any]:
        channel.set_overwrite(bot_id, type=1, deny=deny)
        async with raw_api(fake) as http:
            if files:
                data = _multipart({**body, "attachments": [{"id": 0, "filename": "a.png"}]}, [("a.png", PNG)])
                async with http.post(url, data=data) as resp:
                    return resp.status, await resp.json()
            async with http.post(url, json=body) as resp:
                return resp.status, await resp.json()

    assert (await status(SEND_MESSAGES, {"content": "x"}))[1]["code"] == 50013
    assert (await status(VIEW_CHANNEL, {"content": "x"}))[1]["code"] == 50001
    assert (await status(ATTACH_FILES, {"content": "x"}, files=1))[0] == 403
    assert (await status(ATTACH_FILES, {"content": "x"}))[0] == 200  # no file: allowed
    assert (await status(EMBED_LINKS, {"embeds": [{"title": "e"}]}))[0] == 403
    reply = {"content": "r", "message_reference": {"message_id": str(target.id)}}
    assert (await status(READ_MESSAGE_HISTORY, reply))[0] == 403
    assert (await status(READ_MESSAGE_HISTORY, {"content": "plain"}))[0] == 200

    # Without Read Message History, listing messages answers an empty list and fetching one is refused.
    async with raw_api(fake) as http:
        async with http.get(url) as resp:
            assert resp.status == 200 and await resp.json() == []
        async with http.get(f"{url}/{target.id}") as resp:
            assert resp.status == 403 and (await resp.json())["code"] == 50013
    channel.set_overwrite(bot_id, type=1)
    async with raw_api(fake) as http, http.get(url) as resp:
        assert len(await resp.json()) == 3  # the member's message and the two posts allowed above

    # Interaction responses and followups are webhooks: the bot's channel permissions don't apply.
    channel.set_overwrite(bot_id, type=1, deny=SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES)
    it = await fake.slash(d.guild, d.general, d.alice, "slow")
    assert (await it.original()).content == "done"
    assert (await it.followup(0)).content == "extra"
    assert sum(1 for r in fake.invalid_requests if r.status == 403) == 6
    channel.set_overwrite(bot_id, type=1)


async def test_cdn_urls_are_signed_expire_and_can_be_refreshed(fake_discord: FakeDiscord) -> None:
    import aiohttp

    fake = fake_discord
    d = fake.default
    assert d is not None
    message = await fake.user_message(d.general, d.alice, "pic", attachments=[FakeAttachment("p.png", PNG)])
    att = message.attachments[0]
    url = message.to_payload()["attachments"][0]["url"]
    assert {"ex", "is", "hm"} <= set(re.findall(r"[?&](\w+)=", url))
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200 and await resp.read() == PNG
        async with http.get(att.url) as resp:  # unsigned
            assert resp.status == 404
        async with http.get(url.replace("hm=", "hm=0")) as resp:  # forged signature
            assert resp.status == 404

        fake.cdn_url_lifetime = 0  # every URL issued from now on has already expired
        stale = fake.signed_url(att)
        async with http.get(stale) as resp:
            assert resp.status == 404 and await resp.text() == "This content is no longer available."
        fake.cdn_url_lifetime = 60
        async with raw_api(fake) as api:
            body = {"attachment_urls": [stale]}
            async with api.post("/api/v10/attachments/refresh-urls", json=body) as resp:
                (entry,) = (await resp.json())["refreshed_urls"]
        assert entry["original"] == stale and entry["refreshed"] != stale
        async with http.get(entry["refreshed"]) as resp:
            assert resp.status == 200 and await resp.read() == PNG
    # Fetching the message again also gives fresh URLs (what Discord documents for bots).
    async with raw_api(fake) as api, api.get(f"/api/v10/channels/{d.general}/messages/{message.id}") as resp:
        fresh = (await resp.json())["attachments"][0]["url"]
    async with aiohttp.ClientSession() as http, http.get(fresh) as resp:
        assert resp.status == 200
    # refresh-urls is Discord's, but not in its OpenAPI spec: a bot that calls it fails the spec rule.
    assert [r.route for r in fake.unspecced_routes] == ["POST /attachments/refresh-urls"]
    fake.unspecced_routes.clear()


async def test_followup_after_the_deferred_original_was_deleted_is_a_new_message(
    fake_discord: FakeDiscord, bot: ProofBot
) -> None:
    d = fake_discord.default
    assert d is not None
    it = await fake_discord.slash(d.guild, d.general, d.alice, "vanish")
    (sent,) = await bot.wait_result()
    assert it.original_deleted and it.original_message is not None and it.original_message.deleted
    followup = await it.followup(0)
    assert followup.id == sent.id != it.original_message.id and followup.content == "after the delete"
    assert not followup.deleted and followup in fake_discord.messages(d.general)


async def test_rate_limit_buckets_headers_and_429(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    d = fake.default
    assert d is not None
    async with raw_api(fake) as http:
        seen = []
        for i in range(6):
            async with http.post(f"/api/v10/channels/{d.general}/messages", json={"content": str(i)}) as resp:
                seen.append((resp.status, dict(resp.headers), await resp.json()))
        for i, (status, headers, _) in enumerate(seen[:5]):
            assert status == 200 and headers["X-RateLimit-Limit"] == "5"
            assert headers["X-RateLimit-Remaining"] == str(4 - i)
            assert 0 < float(headers["X-RateLimit-Reset-After"]) <= 5
            assert float(headers["X-RateLimit-Reset"]) > time.time()
            assert "X-RateLimit-Scope" not in headers  # only on 429s, as Discord sends it
        status, headers, body = seen[5]
        assert status == 429 and body["global"] is False and 0 < body["retry_after"] <= 5
        assert headers["X-RateLimit-Scope"] == "user" and headers["Via"] and headers["Retry-After"]
        assert headers["X-RateLimit-Bucket"] == seen[0][1]["X-RateLimit-Bucket"]
        # Buckets are per channel: another channel is untouched.
        async with http.post(f"/api/v10/channels/{d.images}/messages", json={"content": "x"}) as resp:
            assert resp.status == 200 and resp.headers["X-RateLimit-Remaining"] == "4"
    assert [r.status for r in fake.invalid_requests] == [429]  # a 429 counts as an invalid request


async def test_global_rate_limit_spares_interaction_endpoints(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    fake.rate_limits.global_per_second = 3  # 50 in Discord; small here so a test reaches it
    statuses = []
    async with raw_api(fake) as http:
        for _ in range(4):
            async with http.get("/api/v10/users/@me") as resp:
                statuses.append(resp.status)
                last = (dict(resp.headers), await resp.json())
        for _ in range(3):
            async with http.post("/api/v10/interactions/1/t/callback", json={"type": 5}) as resp:
                assert resp.status == 404  # not 429: interaction endpoints don't count toward it
        async with http.get(f"/api/v10/webhooks/{fake.application_id}/tok/messages/@original") as resp:
            assert resp.status == 401  # an interaction webhook (unknown token), not a global 429
    assert statuses == [200, 200, 200, 429]
    assert last[1]["global"] is True and last[0]["X-RateLimit-Global"] == "true"
    assert last[0]["X-RateLimit-Scope"] == "global" and 0 < last[1]["retry_after"] <= 1


async def test_invalid_requests_lead_to_a_ban(fake_discord: FakeDiscord) -> None:
    import aiohttp

    fake = fake_discord
    fake.rate_limits.invalid_limit = 3
    async with aiohttp.ClientSession(base_url=fake.url) as http:
        for _ in range(3):
            async with http.get("/api/v10/users/@me", headers={"Authorization": "Bot wrong"}) as resp:
                assert resp.status == 401
        assert fake.invalid_request_count() == 3
        async with http.get("/api/v10/users/@me", headers={"Authorization": f"Bot {fake.token}"}) as resp:
            assert resp.status == 429 and "Via" not in resp.headers and "1015" in await resp.text()


async def test_discord_py_honours_the_rate_limit_headers(fake_discord: FakeDiscord, bot: ProofBot) -> None:
    d = fake_discord.default
    assert d is not None
    (rule,) = [r for r in fake_discord.rate_limits.routes if r.name == "message-create"]
    rule.per = 0.5  # 5 messages per 0.5 s, so the test stays short
    channel = bot.get_channel(d.general)
    assert isinstance(channel, discord.TextChannel)
    sent = await asyncio.gather(*(channel.send(f"m{i}") for i in range(12)))
    assert len({m.id for m in sent}) == 12
    assert not [r for r in fake_discord.requests if r.status == 429]  # waited on Remaining: 0 instead


async def test_enforce_nonce_returns_the_existing_message(fake_discord: FakeDiscord) -> None:
    d = fake_discord.default
    assert d is not None
    url = f"/api/v10/channels/{d.general}/messages"
    async with raw_api(fake_discord) as http:
        ids = []
        for body in (
            {"content": "a", "nonce": "job-7", "enforce_nonce": True},
            {"content": "b", "nonce": "job-7", "enforce_nonce": True},
            {"content": "c", "nonce": "job-7"},
        ):
            async with http.post(url, json=body) as resp:
                ids.append((await resp.json())["id"])
    assert ids[0] == ids[1] != ids[2]
    assert [m.content for m in fake_discord.messages(d.general)] == ["a", "c"]
