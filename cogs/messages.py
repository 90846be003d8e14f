"""Every sentence, title and label a member or moderator reads, by stable key, in their language.

The texts live in the gettext catalogs (`cogs/locales/<lang>/LC_MESSAGES/messages.po`, loaded by
`cogs.i18n`); a key (`refusal.no_key`, `notice.timed_out`, `status.running`, ...) is a msgid, its
text a `str.format` template with named fields. Code asks a `Words` (the catalog in one language)
for `words(key, **params)`: it never builds a sentence from pieces of English, and never picks a
plural form itself: a key with plural forms takes `count` and the catalog chooses (`ngettext`).
Numbers in the fields are formatted for the language here (Babel: `1,234` / `1.234`); job numbers
stay plain (they are typed back into `/show`). Discord timestamps (`<t:…:R>`) are rendered by
Discord in each reader's own language.

Which language: `words(locale)` takes a Discord locale (`vi` → Vietnamese, anything else English,
see `cogs.i18n.language`). Ephemeral answers use the member's `interaction.locale`; public
messages the server's (`public_locale`: the `/config language` setting, else Discord's server
locale); a job's public messages keep the locale stored in its row at launch.

Discord markup (mentions `<@id>`, channels `<#id>`, timestamps `<t:…>`, `**bold**`) is shaped by the
code that knows the ids (`cogs/embeds.py`) and passed in as fields. Command, option and choice
declarations registered with Discord are localized from the same catalogs (`command.*`,
`choice.*` keys) by `cogs.translator`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache

from babel import Locale
from babel.dates import format_date, format_skeleton
from babel.numbers import format_decimal

from bot.hub import (
    DownloadError,
    ExpiredApiKey,
    GenerationFailed,
    HubError,
    HubUnavailable,
    InsufficientCredits,
    InvalidApiKey,
    InvalidRequest,
    MissingApiKey,
    NotFound,
    OutcomeUnknown,
)
from bot.refusals import Refusal, RefusalCode
from cogs import i18n

# Number fields shown as typed: job numbers are copied into `/show` (no grouping separators).
PLAIN_NUMBERS = frozenset({"job"})
# The hub's own words quoted in a message are clamped: they are untrusted text.
HUB_MESSAGE_MAX = 300


@dataclass(frozen=True)
class Words:
    """The catalog in one language (`cogs.i18n.LANGUAGES`)."""

    language: str

    @property
    def locale(self) -> Locale:
        return _babel_locale(self.language)

    def __call__(self, key: str, /, **params: object) -> str:
        """The message `key` with its fields filled in; a plural key picks its form by `count`.

        A key this language lacks reads in English (the catalog check reports it); a key no
        catalog has is a bug: `KeyError`."""
        loaded = i18n.catalog(self.language)
        if key not in loaded.keys:
            loaded = i18n.catalog(i18n.DEFAULT)
            if key not in loaded.keys:
                raise KeyError(key)
        if key in loaded.plurals:
            count = params["count"]
            assert isinstance(count, int), f"{key}: count must be a whole number"
            template = loaded.translations.ngettext(key, key, count)
        else:
            template = loaded.translations.gettext(key)
        return template.format(**{name: self._field(name, value) for name, value in params.items()})

    def has(self, key: str) -> bool:
        """Whether some catalog has `key` (a variant such as `notice.bad_key.personal` is optional)."""
        return key in i18n.catalog(self.language).keys or key in i18n.catalog(i18n.DEFAULT).keys

    def get(self, key: str) -> str | None:
        """The raw text of `key` in this language, or None when this language doesn't have it."""
        loaded = i18n.catalog(self.language)
        return loaded.translations.gettext(key) if key in loaded.keys and key not in loaded.plurals else None

    def number(self, value: int | float) -> str:
        """A number as this language writes it (grouping and decimal marks; whole numbers for floats)."""
        return _number(self.language, value)

    def full_date(self, value: datetime) -> str:
        """A calendar date as this language writes it (for dates that are not moments: expiries)."""
        return format_date(value, format="medium", locale=self.locale)

    def day(self, value: date) -> str:
        """A day of the month, short, as this language writes it (`11/30`, `30/11`)."""
        return format_skeleton("Md", value, locale=self.locale)

    def _field(self, name: str, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float) or name in PLAIN_NUMBERS:
            return value
        return self.number(value)


@cache
def _babel_locale(language: str) -> Locale:
    return Locale.parse(language)


@lru_cache(maxsize=4096, typed=True)
def _number(language: str, value: int | float) -> str:
    """`Words.number`, remembered: Babel takes tens of µs per number, and every status and result
    embed shows a few (costs, counts), the same ones again and again."""
    if isinstance(value, float):
        return format_decimal(value, format="#,##0", locale=_babel_locale(language))
    return format_decimal(value, locale=_babel_locale(language))


def load_languages() -> None:
    """Every language's catalog and Babel's data for it, at start. Babel reads a language's data
    on its first number (about 0.1 s of CPU), which would otherwise fall on the first member's
    answer, and in a burst on every answer queued behind it. `i18n.CatalogMissing` when a catalog
    is missing (a broken install)."""
    for language in i18n.LANGUAGES:
        i18n.catalog(language)
        _number(language, 1)


def words(locale: object) -> Words:
    """The catalog for a Discord locale (`discord.Locale`, its value such as "vi" or "en-US", or None).
    One `Words` per language: nothing is kept per locale value (those come from outside)."""
    return _words(i18n.language(locale))


@cache
def _words(language: str) -> Words:
    return Words(language)


def public_locale(setting: str, server_locale: object) -> str:
    """The language of a server's public messages: its `/config language` setting (`en`, `vi`), or
    with `auto` Discord's locale of the server (`guild_locale`, `preferred_locale`)."""
    return setting if setting in i18n.LANGUAGES else i18n.language(server_locale)


def echo(value: str, limit: int = 40) -> str:
    """A member's option value, shortened for quoting back (options are free text)."""
    value = value.replace("`", "'")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def refusal(w: Words, refusal: Refusal) -> str:
    """A refusal of the core, in words: its reason code's message with its facts shaped for it."""
    p = dict(refusal.params)
    code = refusal.code
    key = f"refusal.{code.value}"
    if code is RefusalCode.CHANNEL_NOT_ALLOWED:
        p["channels"] = channel_list(p["channels"])
    elif code is RefusalCode.UNKNOWN_MODEL:
        p["model"] = echo(p["model"])
        p["available"] = ", ".join(f"`{m}`" for m in p["available"][:20]) or w("list.none")
    elif code in _ECHOED:
        p.update({name: echo(p[name]) for name in ("aspect", "resolution") if name in p})
    elif code is RefusalCode.QUALITY_INVALID:
        p["qualities"] = ", ".join(p["qualities"])
    elif code is RefusalCode.QUOTA_EXCEEDED:
        p["count"] = p.pop("cost")  # the credits the request needs: their plural form
        resets = p.pop("resets_at")
        if resets is not None:
            key, p["resets"] = f"{key}.resets", f"<t:{int(resets.timestamp())}:R>"
    elif code in (RefusalCode.REFERENCE_TOO_LARGE, RefusalCode.REFERENCE_OVER_LIMIT):
        p["limit_mb"] = p.pop("limit") // (1024 * 1024)
        if "size" in p:
            p["megabytes"] = p.pop("size") / 1024 / 1024
    return w(key, **p)


# Refusals that quote a member's own option values back: shortened, backticks neutralised.
_ECHOED = (RefusalCode.ASPECT_UNSUPPORTED, RefusalCode.RESOLUTION_UNSUPPORTED, RefusalCode.SIZE_UNSUPPORTED)


def channel_list(channel_ids: Iterable[int]) -> str:
    """Channels as mentions, `<#1>, <#2>`."""
    return ", ".join(f"<#{c}>" for c in channel_ids)


def quoted(w: Words, said: str, limit: int = HUB_MESSAGE_MAX) -> str:
    """Someone else's words (the hub's) quoted in ours: clamped, code spans and mentions defused."""
    said = " ".join(said.split()).replace("`", "'")
    said = said if len(said) <= limit else said[: limit - 1] + "…"
    return w("hub_error.quote", text=said)


# The hub's error codes (as `bot.hub` classes) → what a member reads; the most specific first.
_HUB_ERRORS: tuple[tuple[type[HubError], str], ...] = (
    (MissingApiKey, "hub_error.bad_key"),
    (InvalidApiKey, "hub_error.bad_key"),
    (ExpiredApiKey, "hub_error.expired_key"),
    (InsufficientCredits, "hub_error.insufficient_credits"),
    (HubUnavailable, "hub_error.unavailable"),
    (OutcomeUnknown, "hub_error.outcome_unknown"),
    (DownloadError, "hub_error.download_failed"),
    (GenerationFailed, "hub_error.generation_failed"),
    (NotFound, "hub_error.not_found"),
    (InvalidRequest, "hub_error.invalid_request"),
)
# Codes whose message is ours to explain, not the hub's: its own words add nothing a member can use.
_UNQUOTED = (
    MissingApiKey,
    InvalidApiKey,
    ExpiredApiKey,
    InsufficientCredits,
    HubUnavailable,
    OutcomeUnknown,
    DownloadError,
)


def hub_error(w: Words, exc: BaseException) -> str:
    """A hub failure in words a member understands, with what to do about it (anything else: our
    fault). The hub's own message, when it says something about the request, follows quoted."""
    if not isinstance(exc, HubError):
        return w("error.unexpected")
    key = next((key for cls, key in _HUB_ERRORS if isinstance(exc, cls)), "hub_error.refused")
    said = w(key)
    if exc.message and not isinstance(exc, _UNQUOTED):
        said += " " + w("hub_error.hub_said", message=quoted(w, exc.message))
    return said
