"""The bot's forms (modals): a prompt for given reference images, the server's hub key, a member's own.

Forms time out (`Timings.form_timeout`, `key_form_timeout`) so one opened and never sent leaves
discord.py's store. Their titles and labels come from the catalog, in the language of the member
who opens them. A form's errors go to the one
error path (`cogs.errors.report`).
"""

from __future__ import annotations

import logging

import discord

from bot.hub import Credits, HubError, InvalidApiKey, MissingApiKey
from bot.imagine import ImagineRequest
from bot.logs import kv
from bot.references import Attachment
from bot.services import Services
from cogs import embeds, errors, messages
from cogs.checks import in_guild, is_moderator, member_roles, require_manage_server
from cogs.client import ImageHubBot
from cogs.errors import Denied
from cogs.launch import launch
from cogs.messages import Words

log = logging.getLogger(__name__)

# What the form's image-count field accepts, exactly.
COUNTS = {str(n): n for n in range(1, 5)}


def _text_input(**options: object) -> discord.ui.Label[discord.ui.Modal]:
    """A form field the current way: a Label (type 18) holding the text input (not an action row);
    its label is set from the catalog when the form is made."""
    return discord.ui.Label(text="\u200b", component=discord.ui.TextInput(**options))  # type: ignore[arg-type]


def _value(field: discord.ui.Label[discord.ui.Modal]) -> str:
    component = field.component
    assert isinstance(component, discord.ui.TextInput)
    return component.value


class Form(discord.ui.Modal):
    """A form whose errors are told like every command's."""

    # discord.py's `Modal` narrows `BaseView.on_error` the same way.
    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await errors.report(interaction, error)


class ImagineModal(Form):
    """Prompt and options for the context menu and the "Use as reference" button."""

    prompt = _text_input(style=discord.TextStyle.paragraph, max_length=4000)
    aspect = _text_input(required=False, max_length=8)
    resolution = _text_input(required=False, max_length=4)
    count = _text_input(required=False, max_length=2)

    def __init__(
        self, bot: ImageHubBot, w: Words, attachments: tuple[Attachment, ...], *, from_result: bool = False
    ) -> None:
        title = w("form.imagine.from_result" if from_result else "form.imagine.title")
        super().__init__(title=title, timeout=bot.services.timings.form_timeout)
        self.prompt.text = w("form.imagine.prompt")
        self.aspect.text = w("form.imagine.aspect")
        self.resolution.text = w("form.imagine.resolution")
        self.count.text = w("form.imagine.count")
        self.bot = bot
        self.attachments = attachments

    async def on_submit(self, interaction: discord.Interaction) -> None:
        here = in_guild(interaction)
        count_text = _value(self.count).strip()
        if count_text and count_text not in COUNTS:  # ASCII 1-4 only: "²" and "٣" pass isdigit()
            raise Denied("denied.count_field")
        request = ImagineRequest(
            guild_id=here.guild_id,
            channel_id=here.channel_id,
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


class KeyModal(Form):
    """The server's hub key, typed into a form (never a slash option, which Discord shows in the
    channel's command log), verified against the hub, stored encrypted, shown only masked."""

    key = _text_input(placeholder="gih_live_…", min_length=8, max_length=200)

    def __init__(self, bot: ImageHubBot, w: Words) -> None:
        super().__init__(title=w("form.key.title"), timeout=bot.services.timings.key_form_timeout)
        self.key.text = w("form.key.label")
        self.bot = bot

    async def on_submit(self, interaction: discord.Interaction) -> None:
        here = in_guild(interaction)
        require_manage_server(interaction)
        raw = _value(self.key).strip()
        w = messages.words(interaction.locale)
        services = self.bot.services
        await interaction.response.defer(ephemeral=True, thinking=True)
        balance = await _verified(services, raw, w)
        await services.keys.set_key(here.guild_id, raw, interaction.user.id)
        info = await services.keys.key_info(here.guild_id)
        log.info(kv("config.key_set", guild=here.guild_id, user=interaction.user.id))
        masked = info.masked if info else "…"
        saved = w("config.key_saved", masked=masked, count=balance.credits)
        await interaction.followup.send(embed=embeds.plain(saved, colour=embeds.OK), ephemeral=True)


class PersonalKeyModal(Form):
    """A member's own hub key (`/mykey set`): typed into a form, verified against the hub (a balance
    call), stored encrypted for this member only, shown only masked, never logged."""

    key = _text_input(placeholder="gih_live_…", min_length=8, max_length=200)

    def __init__(self, bot: ImageHubBot, w: Words) -> None:
        super().__init__(title=w("form.mykey.title"), timeout=bot.services.timings.key_form_timeout)
        self.key.text = w("form.key.label")
        self.bot = bot

    async def on_submit(self, interaction: discord.Interaction) -> None:
        raw = _value(self.key).strip()
        w = messages.words(interaction.locale)
        services = self.bot.services
        await interaction.response.defer(ephemeral=True, thinking=True)
        balance = await _verified(services, raw, w)
        try:
            info = await services.keys.set_personal_key(interaction.user.id, raw)
        except ValueError:
            raise Denied("denied.key_not_recognised") from None
        log.info(kv("mykey.set", user=interaction.user.id))
        saved = w("mykey.saved", masked=info.masked, count=balance.credits)
        await interaction.followup.send(embed=embeds.plain(saved, colour=embeds.OK), ephemeral=True)


async def _verified(services: Services, raw: str, w: Words) -> Credits:
    """The balance behind a key typed into a form: the hub's answer proves the key works (a key
    the hub doesn't know, or can't be asked about now, is refused, with the hub's reason)."""
    try:
        return await services.hubs.with_key(raw).get_credits()
    except (InvalidApiKey, MissingApiKey):
        raise Denied("denied.key_not_recognised") from None
    except HubError as exc:
        raise Denied("denied.key_not_checked", reason=messages.hub_error(w, exc)) from None
