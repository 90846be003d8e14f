"""Commands registered in Discord's languages: every command, subcommand, option and choice carries
its Vietnamese name and description, within Discord's documented rules, and the sync is accepted.

Discord's rule for `CHAT_INPUT` command and option names (interactions--application-commands.mdx):
`^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$` with the unicode flag, lowercase wherever a letter
has a lowercase variant; the same holds for their localizations. Context-menu names may be mixed
case with spaces (1 to 32); descriptions and choice names are 1 to 100 characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from cogs import i18n, messages
from tests.bed import Bed
from tests.fakediscord.validation import check_commands, slash_name_ok

SUBCOMMAND, GROUP = 1, 2


def documented_name_ok(name: str) -> bool:
    """Discord's documented regex, character by character (Python's `re` has no `\\p{…}`): letters
    (L*), numbers (N*), Devanagari or Thai, `-`, `_`, `'`; 1 to 32; lowercase."""
    if not 1 <= len(name) <= 32 or name.lower() != name:
        return False
    return all(
        c in "-_'"
        or unicodedata.category(c)[0] in "LN"
        or unicodedata.name(c, "").startswith(("DEVANAGARI", "THAI"))
        for c in name
    )


def walk(items: list[dict[str, Any]], path: str = "") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, path, item) for every command, subcommand, group, option and choice."""
    for item in items:
        here = f"{path} {item['name']}".strip()
        kind = (
            {SUBCOMMAND: "subcommand", GROUP: "group"}.get(item.get("type", 0), "option")
            if path
            else "command"
        )
        yield kind, here, item
        for choice in item.get("choices") or []:
            yield "choice", f"{here}={choice['value']}", choice
        yield from walk(item.get("options") or [], here)


def test_the_documented_rule_as_written_here_accepts_and_refuses_what_discord_does() -> None:
    for good in (
        "tạo-ảnh",
        "độ-phân-giải",
        "ảnh-tham-chiếu-1",
        "hàng-đợi-mỗi-thành-viên",
        "it's",
        "नमस्ते",
        "สวัสดี",
    ):
        assert documented_name_ok(good) and slash_name_ok(good), good
    for bad in (
        "Tạo-ảnh",
        "tạo ảnh",
        "tạo/ảnh",
        "",
        "a" * 33,
        "ảnh!",
        "e\u0301",
    ):  # the last: a combining mark
        assert not documented_name_ok(bad) and not slash_name_ok(bad), bad


async def test_every_command_option_and_choice_is_registered_in_vietnamese(bed: Bed) -> None:
    (sync,) = [s for s in bed.fake.command_syncs if s.payload]
    assert bed.fake.invalid_requests == []  # Discord's spec and rules accepted the localized payload
    seen = 0
    for kind, path, item in walk(sync.payload):
        names = item.get("name_localizations") or {}
        assert set(names) == {"vi"}, (path, names)  # English is the default; no other language
        vi = names["vi"]
        if kind == "choice":
            assert 1 <= len(vi) <= 100, path
            continue
        if item.get("type") in (2, 3) and kind == "command":  # a context menu
            assert 1 <= len(vi) <= 32 and vi != item["name"], path
            continue
        assert documented_name_ok(vi), (path, vi)
        descriptions = item.get("description_localizations") or {}
        assert set(descriptions) == {"vi"} and 1 <= len(descriptions["vi"]) <= 100, path
        assert descriptions["vi"] != item["description"], path  # translated, not copied
        seen += 1
    assert seen > 60  # commands, groups, subcommands and options
    # Localized names are unique among their siblings, as the defaults are.
    for _, path, item in walk(sync.payload):
        options = item.get("options") or []
        localized = [o["name_localizations"]["vi"] for o in options]
        assert len(localized) == len(set(localized)), path
    top = [c["name_localizations"]["vi"] for c in sync.payload if c.get("type", 1) == 1]
    assert len(top) == len(set(top))


async def test_the_catalogs_hold_exactly_what_the_commands_declare(bed: Bed) -> None:
    """The English catalog's `command.*` / `choice.*` text is the English declared in the code, every
    one the sync asked for is in Vietnamese too, and no command entry is left over."""
    translator = bed.bot.translator
    assert translator.missing == set()
    english = i18n.entries(i18n.read_source("en"))
    declared = {key: english[key][0] for key in english if key.startswith(("command.", "choice."))}
    assert declared == translator.asked
    vietnamese = messages.words("vi")
    assert all(vietnamese.get(key) for key in translator.asked)


def test_the_fake_refuses_a_localized_name_that_breaks_the_rules() -> None:
    command = {
        "name": "imagine",
        "type": 1,
        "description": "Generate",
        "name_localizations": {"vi": "Tạo Ảnh"},
        "description_localizations": {"vi": "x" * 101},
        "options": [
            {
                "name": "quality",
                "type": 3,
                "description": "Quality",
                "name_localizations": {"vi": "chất lượng"},
                "choices": [{"name": "low", "value": "low", "name_localizations": {"vi": "t" * 101}}],
            }
        ],
    }
    error = check_commands([command], guild=False)
    assert error is not None
    errors = error["errors"]["0"]
    assert errors["name_localizations"]["vi"]["_errors"][0]["code"] == "APPLICATION_COMMAND_INVALID_NAME"
    assert "vi" in errors["description_localizations"]
    option = errors["options"]["0"]
    assert option["name_localizations"]["vi"]["_errors"][0]["code"] == "APPLICATION_COMMAND_INVALID_NAME"
    assert "vi" in option["choices"]["0"]["name_localizations"]


async def test_texts_name_commands_as_the_reader_s_discord_shows_them(bed: Bed) -> None:
    """A `/command` quoted in a sentence is a top-level command's name in that sentence's language
    (Vietnamese texts say `/mô-hình`, not `/models`); Info's copyable `/imagine …` line aside."""
    (sync,) = [s for s in bed.fake.command_syncs if s.payload]
    slash = [c for c in sync.payload if c.get("type", 1) == 1]
    names = {"en": {c["name"] for c in slash}, "vi": {c["name_localizations"]["vi"] for c in slash}}
    quoted = 0
    for lang in i18n.LANGUAGES:
        for key, forms in i18n.entries(i18n.read_source(lang)).items():
            if key == "info.line_attached":
                continue
            for form in forms:
                for named in re.findall(r"(?<![\w/<:}])/([^\s`/.,:;)'{}]+)", form):
                    assert named in names[lang], (lang, key, named)
                    quoted += 1
    assert quoted > 20
