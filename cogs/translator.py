"""Commands in Discord's languages: discord.py's `Translator`, fed from the message catalogs.

When the command tree is synced, discord.py asks for every command, subcommand, option and
choice name and description in every Discord locale; this answers from the catalogs by a key
made from where the string sits, so declarations in the code stay plain English:

- a command or group: `command.<path>.name` / `.description` (`command.config.key.set.name`);
  a context menu: `command.<its name, lowercase, spaces as _>.name`;
- an option: `command.<path>.option.<option>.name` / `.description`;
- a choice: `choice.<value>.name`.

English is the default Discord shows everyone (the declaration; `en-US`/`en-GB` get nothing
extra); any other locale with a catalog (`vi`) gets its text. The English catalog holds the
same English as the declarations (a test compares them), so every key exists in every language.
`asked` and `missing` record what a sync asked for, so tests can prove nothing was left out.
"""

from __future__ import annotations

from discord import Locale, app_commands
from discord.app_commands import TranslationContextLocation as Where

from cogs import i18n, messages


def translation_key(context: app_commands.TranslationContextTypes) -> str | None:
    """The catalog key of a string discord.py asks to translate (None: nothing of ours)."""
    where, data = context.location, context.data
    if where in (Where.command_name, Where.group_name):
        return f"{_path(data)}.name"
    if where in (Where.command_description, Where.group_description):
        return f"{_path(data)}.description"
    if isinstance(data, app_commands.Parameter):
        part = "name" if where is Where.parameter_name else "description"
        return f"{_path(data.command)}.option.{data.name}.{part}"
    if isinstance(data, app_commands.Choice):
        return f"choice.{data.value}.name"
    return None


def _path(command: object) -> str:
    if isinstance(command, app_commands.ContextMenu):
        return "command." + command.name.lower().replace(" ", "_")
    assert isinstance(command, app_commands.Command | app_commands.Group), command
    return "command." + command.qualified_name.replace(" ", ".")


class CatalogTranslator(app_commands.Translator):
    """See the module docstring."""

    def __init__(self) -> None:
        self.asked: dict[str, str] = {}  # key → the English declared in the code
        self.missing: set[tuple[str, str]] = set()  # (language, key) a catalog lacks

    async def translate(
        self, string: app_commands.locale_str, locale: Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        key = translation_key(context)
        if key is None:
            return None
        self.asked[key] = string.message
        lang = i18n.language(locale)
        if lang == i18n.DEFAULT:
            return None  # English (the default), or a locale we have no catalog for
        said = messages.words(lang).get(key)
        if said is None:
            self.missing.add((lang, key))
        return said
