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
import signal
import sys
import textwrap
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
    assert sync.guild_id is None and len(sync.payload) == 12


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
