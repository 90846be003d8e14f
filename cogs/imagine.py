"""/imagine, the "Imagine with these images" context menu, and the shared launch path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import discord
from discord import app_commands
from discord.ext import commands

from bot import metrics
from bot.hub import HubError, HubModel
from bot.hub.sizes import QUALITIES, TIERS
from bot.imagine import ImagineRequest, Plan
from bot.jobs import JobStatus
from bot.logs import kv
from bot.references import Attachment, Fetch
from bot.refusals import Blocked, Refusal
from cogs import render

if TYPE_CHECKING:
    from bot.client import ImageHubBot

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
# What the form's image-count field accepts, exactly.
COUNTS = {str(n): n for n in range(1, 5)}
_launch_slots: weakref.WeakKeyDictionary[ImageHubBot, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def member_roles(interaction: discord.Interaction) -> tuple[int, ...]:
    user = interaction.user
    return tuple(role.id for role in user.roles) if isinstance(user, discord.Member) else ()


def server_permissions(interaction: discord.Interaction) -> discord.Permissions:
    """The member's server-wide permissions (roles, or owner), without any channel overwrite.

    `interaction.permissions` are the channel's: Manage Messages granted by an overwrite on one
    channel must not make a member a moderator of the whole server."""
    user = interaction.user
    return user.guild_permissions if isinstance(user, discord.Member) else discord.Permissions.none()


def is_moderator(interaction: discord.Interaction) -> bool:
    perms = server_permissions(interaction)
    return perms.manage_guild or perms.manage_messages or perms.administrator


def to_attachment(a: discord.Attachment, message: discord.Message | None = None) -> Attachment:
    """Our view of a Discord attachment; one from a message remembers where it came from, so its
    signed URL can be renewed by fetching that message again once it expires."""
    source = (message.channel.id, message.id, a.id) if message is not None else None
    return Attachment(url=a.url, filename=a.filename, size=a.size, content_type=a.content_type, source=source)


def _expires_soon(url: str, margin: float) -> bool:
    """Whether a signed CDN URL (`ex` = expiry, hex epoch seconds) is expired or within `margin`
    seconds of it (the engine may download it again later, e.g. after a restart)."""
    query = parse_qs(urlsplit(url).query)
    try:
        expires = int(query["ex"][0], 16)
    except (KeyError, IndexError, ValueError):
        return True  # unsigned: Discord no longer serves it
    return expires - time.time() < margin


async def fresh_references(bot: ImageHubBot, request: ImagineRequest) -> ImagineRequest:
    """Renew the expiring CDN URLs of references that came from a message by fetching that message
    again (Discord documents that fetched payloads carry valid signed URLs; the spec has no other
    route for it). A reroll or a form left open after the URLs expired still works; a message that
    is gone, or the bot can't read, is a clear refusal. Slash-command uploads have no message."""
    renewed = await _renew(bot, request.guild_id, request.attachments)
    return request if renewed == request.attachments else replace(request, attachments=renewed)


def renewing_fetch(bot: ImageHubBot, guild_id: int, pending: tuple[Attachment, ...] = ()) -> Fetch:
    """Download a reference; when its URL no longer works (expired early, a clock off), renew it from
    its message once and try again."""

    renewed: dict[tuple[int, int, int], Attachment] = {}  # one fetch of a message serves all its images

    async def fetch(attachment: Attachment) -> bytes:
        try:
            return await bot.services.fetch_attachment(attachment)
        except Exception:
            if attachment.source is None:
                raise
        if attachment.source not in renewed:
            siblings = tuple(a for a in pending if a.source and a.source[:2] == attachment.source[:2])
            for fresh in await _renew(bot, guild_id, siblings or (attachment,), force=True):
                assert fresh.source is not None
                renewed[fresh.source] = fresh
        return await bot.services.fetch_attachment(renewed[attachment.source])

    return fetch


async def _renew(
    bot: ImageHubBot, guild_id: int, attachments: tuple[Attachment, ...], *, force: bool = False
) -> tuple[Attachment, ...]:
    margin = bot.services.timings.url_margin
    stale = {
        a.source[:2] for a in attachments if a.source is not None and (force or _expires_soon(a.url, margin))
    }
    if not stale:
        return attachments
    fresh: dict[int, str] = {}
    guild = bot.get_guild(guild_id)
    for channel_id, message_id in stale:
        channel = guild.get_channel_or_thread(channel_id) if guild is not None else None
        if channel is not None and guild is not None:
            perms = channel.permissions_for(guild.me)
            if not (perms.view_channel and perms.read_message_history):
                raise Refusal(render.REFERENCES_UNREADABLE)
        try:
            message = await bot.get_partial_messageable(channel_id, guild_id=guild_id).fetch_message(
                message_id
            )
        except discord.NotFound:
            raise Refusal(render.REFERENCES_GONE) from None
        except discord.Forbidden:
            raise Refusal(render.REFERENCES_UNREADABLE) from None
        fresh.update({a.id: a.url for a in message.attachments})
    renewed = []
    for a in attachments:
        if a.source is not None and a.source[:2] in stale:
            url = fresh.get(a.source[2])
            if url is None:
                raise Refusal(render.REFERENCES_GONE)
            a = replace(a, url=url)
        renewed.append(a)
    return tuple(renewed)


class FirstAnswer:
    """An interaction's first answer: the real one when it is ready within `after` seconds,
    else a public "thinking…" (deferred) answer at that time, which the real one then replaces."""

    def __init__(self, interaction: discord.Interaction, after: float) -> None:
        self.interaction = interaction
        self.deferred = False
        self.answered = False
        self._lock = asyncio.Lock()
        self._deferral: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(after, self._start_deferral)

    def _start_deferral(self) -> None:
        self._deferral = asyncio.create_task(self._defer())

    async def _defer(self) -> None:
        async with self._lock:
            if self.interaction.response.is_done():
                return
            try:
                await self.interaction.response.defer(thinking=True)
                self.deferred = True
            except discord.HTTPException as exc:
                log.info(kv("imagine.defer_failed", status=exc.status))

    def cancel(self) -> None:
        self._timer.cancel()

    async def public(self, embed: discord.Embed) -> int | None:
        """Answer publicly (replacing the "thinking…" answer); the message's id."""
        self._timer.cancel()
        self.answered = True
        async with self._lock:
            if not self.deferred:
                callback = await self.interaction.response.send_message(embed=embed)
                return callback.message_id
        return (await self.interaction.edit_original_response(embed=embed)).id

    async def refuse(self, embed: discord.Embed) -> None:
        """Answer only to the member when nothing was said yet; after a "thinking…" answer, that answer
        becomes the refusal (an edit of the original response: Discord can't turn a public deferral
        ephemeral, and a followup would be a second message)."""
        self._timer.cancel()
        self.answered = True
        async with self._lock:
            if not self.deferred:
                await self.interaction.response.send_message(embed=embed, ephemeral=True)
                return
        await self.interaction.edit_original_response(embed=embed, view=None)


def launch_slots(bot: ImageHubBot) -> asyncio.Semaphore:
    slots = _launch_slots.get(bot)
    if slots is None:
        slots = _launch_slots[bot] = asyncio.Semaphore(bot.services.timings.launch_concurrency)
    return slots


async def launch(bot: ImageHubBot, interaction: discord.Interaction, request: ImagineRequest) -> None:
    """The one path every generation takes from an interaction: check, answer, reserve, queue.

    Cheap checks and the reservation come first so a refusal is the first, ephemeral answer;
    with references a download slot is taken too (bounded per member and per server), the public
    answer goes next, then their bytes are downloaded and checked (a bad one releases the
    reservation). Under load the first answer is "thinking…" (see
    `FirstAnswer`): a member always hears back within `Timings.early_answer`. Requests checked
    at once are bounded (`Timings.launch_concurrency`), which keeps the event loop's turns short.
    """
    answer = FirstAnswer(interaction, bot.services.timings.early_answer)
    try:
        async with launch_slots(bot):
            await _launch(bot, interaction, request, answer)
    except Exception:
        if answer.deferred and not answer.answered:  # never leave "thinking…" behind
            with contextlib.suppress(discord.HTTPException):
                await answer.refuse(render.refusal(render.hub_error_text(RuntimeError())))
        raise
    finally:
        answer.cancel()


async def _launch(
    bot: ImageHubBot, interaction: discord.Interaction, request: ImagineRequest, answer: FirstAnswer
) -> None:
    services = bot.services
    plan: Plan | None = None
    try:
        request = await fresh_references(bot, request)
        plan = await services.imagine.plan(request)
        # Reserved before anything is downloaded: a member who can't pay makes the bot fetch nothing.
        plan = await services.imagine.reserve(plan)
        slot = services.imagine.claim_downloads(plan)  # None without references
    except Refusal as refusal:
        if plan is not None:
            await services.imagine.abandon(plan)  # reserved, but over a download bound
        metrics.COMMANDS.labels("imagine", "refused").inc()
        await answer.refuse(render.refusal(str(refusal)))
        if isinstance(refusal, Blocked):
            await report_blocked(bot, request, refusal)
        return
    try:
        with slot or contextlib.nullcontext():
            starting = (
                render.queued_embed(plan.request.prompt, plan.cost)
                if plan.queued
                else render.starting_embed(plan.request.prompt, plan.cost)
            )
            status_message_id = await answer.public(starting)
            references = []
            if plan.request.attachments:
                # Downloads can take a while: the public answer went first, within Discord's 3 s.
                fetch = renewing_fetch(bot, request.guild_id, plan.request.attachments)
                references = await services.imagine.fetch_references(plan, fetch)
        job = await services.imagine.start(
            plan,
            references,
            application_id=interaction.application_id,
            interaction_token=interaction.token,
            status_message_id=status_message_id,
            upload_limit=interaction.filesize_limit,
            token_issued_at=interaction.created_at,  # the token's 15 minutes count from here
        )
    except Refusal as refusal:
        await services.imagine.abandon(plan)  # (start() already did, for its own refusals)
        metrics.COMMANDS.labels("imagine", "refused").inc()
        # The public answer is already out: it becomes the refusal (edited, not a second message).
        await interaction.edit_original_response(embed=render.refusal(str(refusal)), view=None)
        return
    except Exception:
        await services.imagine.abandon(plan)
        log.exception(kv("imagine.start_failed", guild=request.guild_id, user=request.user_id))
        if interaction.response.is_done():
            failed = render.refusal(render.hub_error_text(RuntimeError()))
            await interaction.edit_original_response(embed=failed, view=None)
        return
    metrics.COMMANDS.labels("imagine", "accepted").inc()
    log.info(kv("imagine.accepted", guild=job.guild_id, user=job.user_id, job=job.id, cost=job.cost))
    bot.services.engine.wake()
    from cogs.views import status_view

    place = None
    if job.status is JobStatus.QUEUED:
        bot.services.queue_runner.changed(job.guild_id)  # a newcomer may go ahead of others' backlog
        place = await services.queue.place(job)
        if place is not None:
            bot.services.queue_runner.shown(job, place)
    try:
        await interaction.edit_original_response(embed=render.status_embed(job, place), view=status_view(job))
    except discord.HTTPException as exc:
        log.info(kv("imagine.status_edit_failed", job=job.id, status=exc.status))
    await warn_missing_permissions(bot, interaction)


async def warn_missing_permissions(bot: ImageHubBot, interaction: discord.Interaction) -> None:
    """Where the bot can't post results itself (no Send Messages, Attach Files, …), a result that
    outlives the interaction's 15 minutes can't reach the channel whole: tell the member now,
    through the interaction (which needs no channel permission), and the moderator log once."""
    missing = render.missing_permissions(interaction.app_permissions)
    if not missing or interaction.guild_id is None or interaction.channel_id is None:
        return
    try:
        await interaction.followup.send(embed=render.permission_warning(missing), ephemeral=True)
    except discord.HTTPException as exc:
        log.info(kv("imagine.permission_warning_failed", status=exc.status))
    await bot.publisher.missing_at_launch(interaction.guild_id, interaction.channel_id, missing)


async def report_blocked(bot: ImageHubBot, request: ImagineRequest, blocked: Blocked) -> None:
    """Tell the moderator log who tried a blocked prompt where (the prompt in an embed, no mentions)."""
    log.info(kv("imagine.blocked", guild=request.guild_id, user=request.user_id, channel=request.channel_id))
    embed = render.blocked_log_embed(request.user_id, request.channel_id, blocked.prompt)
    try:
        await bot.publisher.mod_log(request.guild_id, embed)
    except Exception as exc:
        log.warning(kv("imagine.blocked_log_failed", guild=request.guild_id, error=type(exc).__name__))


def _text_input(label: str, **options: object) -> discord.ui.Label[ImagineModal]:
    """A modal field the current way: a Label (type 18) holding the text input (not an action row)."""
    return discord.ui.Label(text=label, component=discord.ui.TextInput(**options))  # type: ignore[arg-type]


class ImagineModal(discord.ui.Modal, title="Imagine with these images"):
    """Prompt and options for the context menu and the "Use as reference" button."""

    prompt = _text_input("Prompt", style=discord.TextStyle.paragraph, max_length=4000)
    aspect = _text_input("Aspect ratio, e.g. 16:9 (empty = default)", required=False, max_length=8)
    resolution = _text_input("Resolution: 1K, 2K or 4K (empty = default)", required=False, max_length=4)
    count = _text_input("How many images, 1 to 4 (empty = 1)", required=False, max_length=2)

    def __init__(
        self, bot: ImageHubBot, attachments: tuple[Attachment, ...], *, title: str | None = None
    ) -> None:
        if title:
            super().__init__(title=title, timeout=bot.services.timings.form_timeout)
        else:
            super().__init__(timeout=bot.services.timings.form_timeout)
        self.bot = bot
        self.attachments = attachments

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        count_text = _value(self.count).strip()
        if count_text and count_text not in COUNTS:  # ASCII 1-4 only: "²" and "٣" pass isdigit()
            await interaction.response.send_message(
                embed=render.refusal("The number of images must be a whole number from 1 to 4."),
                ephemeral=True,
            )
            return
        request = ImagineRequest(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            role_ids=member_roles(interaction),
            prompt=_value(self.prompt),
            aspect=_value(self.aspect).strip() or None,
            resolution=_value(self.resolution).strip().upper() or None,
            count=COUNTS[count_text] if count_text else None,
            attachments=self.attachments,
            is_moderator=is_moderator(interaction),
        )
        await launch(self.bot, interaction, request)


def _value(field: discord.ui.Label[ImagineModal]) -> str:
    component = field.component
    assert isinstance(component, discord.ui.TextInput)
    return component.value


def image_attachments(message: discord.Message) -> tuple[Attachment, ...]:
    """A message's image attachments (by declared type or extension; bytes are checked later)."""
    found = []
    for a in message.attachments:
        declared = (a.content_type or "").split(";")[0]
        if declared in IMAGE_TYPES or a.filename.lower().endswith((".png", ".jpg", ".jpeg", ".webp")):
            found.append(to_attachment(a, message))
    return tuple(found)


class Imagine(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot
        self.context_menu = app_commands.ContextMenu(
            name="Imagine with these images", callback=self.from_message
        )
        # Guild only, declared with `contexts` (dm_permission is deprecated; discord.py still sends it).
        self.context_menu.guild_only = True
        self.context_menu.allowed_contexts = app_commands.AppCommandContext(
            guild=True, dm_channel=False, private_channel=False
        )
        bot.tree.add_command(self.context_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.context_menu.name, type=self.context_menu.type)

    @app_commands.command(name="imagine", description="Generate images from a prompt")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What to draw",
        model="Image model (default: the server's)",
        aspect="Aspect ratio, e.g. 1:1 or 16:9",
        resolution="Output resolution tier",
        quality="Rendering quality",
        count="How many images (1-4)",
        reference1="A reference image (PNG, JPEG or WebP)",
        reference2="Another reference image",
        reference3="Another reference image",
        reference4="Another reference image",
    )
    @app_commands.choices(
        resolution=[app_commands.Choice(name=t, value=t) for t in TIERS],
        quality=[app_commands.Choice(name=q, value=q) for q in QUALITIES],
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: str,
        model: str | None = None,
        aspect: str | None = None,
        resolution: str | None = None,
        quality: str | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
        reference1: discord.Attachment | None = None,
        reference2: discord.Attachment | None = None,
        reference3: discord.Attachment | None = None,
        reference4: discord.Attachment | None = None,
    ) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        refs = tuple(
            to_attachment(a) for a in (reference1, reference2, reference3, reference4) if a is not None
        )
        request = ImagineRequest(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            role_ids=member_roles(interaction),
            prompt=prompt,
            model=model,
            aspect=aspect,
            resolution=resolution,
            quality=quality,
            count=count,
            attachments=refs,
            is_moderator=is_moderator(interaction),
        )
        await launch(self.bot, interaction, request)

    @imagine.autocomplete("model")
    async def _model_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        models = await self._models_for_autocomplete()
        return [
            app_commands.Choice(name=render.choice_name(f"{m.id} ({m.provider})"), value=m.id)
            for m in models
            if current.lower() in m.id.lower() and len(m.id) <= render.CHOICE_MAX
        ][:25]

    @imagine.autocomplete("aspect")
    async def _aspect_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        models = await self._models_for_autocomplete()
        chosen = getattr(interaction.namespace, "model", None)
        model = next((m for m in models if m.id == chosen), models[0] if models else None)
        ratios = model.aspect_ratios if model else []
        return [
            app_commands.Choice(name=render.choice_name(r), value=r)
            for r in ratios
            if current in r and len(r) <= render.CHOICE_MAX
        ][:25]

    async def _models_for_autocomplete(self) -> list[HubModel]:
        """Autocomplete must answer fast: what is cached, or nothing if the hub is down."""
        catalog = self.bot.services.catalog
        if catalog.cached():
            return catalog.cached()
        try:
            return await catalog.models()
        except HubError:
            return []

    async def from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Context menu: the message's images become references, a modal asks for the prompt."""
        refs = image_attachments(message)
        if not refs:
            await interaction.response.send_message(
                embed=render.refusal("That message has no PNG, JPEG or WebP images to use as references."),
                ephemeral=True,
            )
            return
        config = await self.bot.services.guilds.get(interaction.guild_id or 0)
        try:
            model = await self.bot.services.catalog.find(config.default_model)
        except HubError as exc:
            await interaction.response.send_message(
                embed=render.refusal(render.hub_error_text(exc)), ephemeral=True
            )
            return
        limit = model.reference_image_limit if model else len(refs)
        if limit < 1:
            await interaction.response.send_message(
                embed=render.refusal(
                    f"The server's default model `{config.default_model}` takes no reference images."
                ),
                ephemeral=True,
            )
            return
        await interaction.response.send_modal(ImagineModal(self.bot, refs[:limit]))


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(Imagine(bot))
