"""The subset of Discord's payload validation that catches real bot bugs (lengths, counts, duplicates).

Each ``check_*`` returns ``None`` when the payload is fine, else the JSON error body Discord would answer with
HTTP 400 (``code`` 50035 "Invalid Form Body" with an ``errors`` tree, or 50006 "Cannot send an empty
message").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from .models import FLAG_COMPONENTS_V2, walk_components


def slash_name_ok(name: str) -> bool:
    """A `CHAT_INPUT` command or option name (or one of its localizations) as Discord documents it:
    `^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$` (unicode), and lowercase wherever a letter has a
    lowercase variant."""
    if not 1 <= len(name) <= 32 or name != name.lower():
        return False
    for char in name:
        category = unicodedata.category(char)
        script = unicodedata.name(char, "").split(" ")[0]
        if not (char in "-_'" or category[0] in "LN" or script in ("DEVANAGARI", "THAI")):
            return False
    return True


def _check_localizations(
    errors: _Errors,
    path: Sequence[str | int],
    item: Mapping[str, Any],
    *,
    slash: bool,
    description: bool,
    name_max: int = 32,
) -> None:
    """`name_localizations` / `description_localizations` follow the same rules as the defaults."""
    for locale, name in (item.get("name_localizations") or {}).items():
        where = [*path, "name_localizations", locale]
        if slash and not slash_name_ok(name):
            errors.add(where, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        elif not 1 <= len(name) <= name_max:
            errors.add(where, "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {name_max} in length.")
    if description:
        for locale, text in (item.get("description_localizations") or {}).items():
            if not 1 <= len(text) <= 100:
                errors.add(
                    [*path, "description_localizations", locale],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )


class _Errors:
    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        node = self.tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def body(self) -> dict[str, Any] | None:
        if not self.tree:
            return None
        return {"message": "Invalid Form Body", "code": 50035, "errors": self.tree}

    def max_len(self, path: Sequence[str | int], value: Any, limit: int) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def empty_message_error() -> dict[str, Any]:
    return {"message": "Cannot send an empty message", "code": 50006}


def check_message(payload: dict[str, Any], n_files: int, *, create: bool) -> dict[str, Any] | None:
    """Validate a message create/edit payload (channel post, webhook, interaction callback data)."""
    errors = _Errors()
    content = payload.get("content")
    errors.max_len(["content"], content, 2000)
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        errors.add(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            errors.max_len(["embeds", i, key], embed.get(key), limit)
            total += len(embed.get(key) or "")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.add(["embeds", i, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            errors.max_len(["embeds", i, "fields", j, "name"], f.get("name"), 256)
            errors.max_len(["embeds", i, "fields", j, "value"], f.get("value"), 1024)
            if not f.get("name") or not f.get("value"):
                errors.add(["embeds", i, "fields", j], "BASE_TYPE_REQUIRED", "This field is required")
            total += len(f.get("name") or "") + len(f.get("value") or "")
        footer = embed.get("footer") or {}
        errors.max_len(["embeds", i, "footer", "text"], footer.get("text"), 2048)
        author = embed.get("author") or {}
        errors.max_len(["embeds", i, "author", "name"], author.get("name"), 256)
        total += len(footer.get("text") or "") + len(author.get("name") or "")
    if total > 6000:
        errors.add(["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    components = payload.get("components") or []
    flags = payload.get("flags") or 0
    _check_components(errors, components, v2=bool(flags & FLAG_COMPONENTS_V2))
    if n_files > 10:
        errors.add(["files"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    body = errors.body()
    if body is not None:
        return body
    if create and not (
        content
        or embeds
        or components
        or n_files
        or payload.get("sticker_ids")
        or payload.get("poll")
        or payload.get("attachments")
    ):
        return empty_message_error()
    return None


def _check_components(errors: _Errors, components: list[dict[str, Any]], *, v2: bool) -> None:
    if not v2:
        if len(components) > 5:
            errors.add(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for i, row in enumerate(components):
            if row.get("type") != 1:
                errors.add(
                    ["components", i],
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "Top-level components must be action rows",
                )
                continue
            children = row.get("components") or []
            if not children:
                errors.add(
                    ["components", i, "components"], "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length."
                )
            width = sum(5 if c.get("type") in (3, 5, 6, 7, 8) else 1 for c in children)
            if width > 5:
                errors.add(
                    ["components", i, "components"],
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
    seen: set[str] = set()
    for comp in walk_components(components):
        custom_id = comp.get("custom_id")
        if custom_id is not None:
            if len(custom_id) > 100 or not custom_id:
                errors.add(
                    ["components", "custom_id"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            if custom_id in seen:
                errors.add(
                    ["components", "custom_id"],
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)
        if comp.get("type") == 2:
            errors.max_len(["components", "label"], comp.get("label"), 80)
            is_link = comp.get("style") == 5
            if is_link and not comp.get("url"):
                errors.add(["components", "url"], "BASE_TYPE_REQUIRED", "This field is required")
            if not is_link and comp.get("style") != 6 and not custom_id:
                errors.add(["components", "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")


def check_modal(data: dict[str, Any]) -> dict[str, Any] | None:
    errors = _Errors()
    errors.max_len(["data", "title"], data.get("title"), 45)
    if not data.get("title"):
        errors.add(["data", "title"], "BASE_TYPE_REQUIRED", "This field is required")
    custom_id = data.get("custom_id")
    if not custom_id or len(custom_id) > 100:
        errors.add(["data", "custom_id"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    comps = data.get("components") or []
    if not 1 <= len(comps) <= 5:
        errors.add(["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
    for comp in walk_components(comps):
        if comp.get("type") == 4:
            errors.max_len(["data", "components", "label"], comp.get("label"), 45)
            errors.max_len(["data", "components", "placeholder"], comp.get("placeholder"), 100)
            if (comp.get("max_length") or 4000) > 4000:
                errors.add(["data", "components", "max_length"], "NUMBER_TYPE_MAX", "Must be 4000 or less.")
    return errors.body()


def check_choices(choices: list[dict[str, Any]]) -> dict[str, Any] | None:
    errors = _Errors()
    if len(choices) > 25:
        errors.add(["data", "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for i, c in enumerate(choices):
        name = c.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            errors.add(
                ["data", "choices", i, "name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        if isinstance(c.get("value"), str):
            errors.max_len(["data", "choices", i, "value"], c["value"], 100)
    return errors.body()


def check_commands(
    commands: list[dict[str, Any]], *, guild: bool, installs: set[int] | None = None
) -> dict[str, Any] | None:
    """Validate a bulk overwrite of application commands. ``installs``: the application's installation
    contexts; a command's ``integration_types`` must be among them ("as long as any included contexts are
    already supported on the application-level", the commands documentation says)."""
    errors = _Errors()
    counts = {1: 0, 2: 0, 3: 0}
    seen: set[tuple[str, int]] = set()
    for i, cmd in enumerate(commands):
        ctype = int(cmd.get("type", 1))
        if installs is not None and not set(cmd.get("integration_types") or [0]) <= installs:
            errors.add(
                [i, "integration_types"],
                "APPLICATION_COMMAND_INVALID_INTEGRATION_TYPE",
                "Installation context is not supported by the application",
            )
        counts[ctype] = counts.get(ctype, 0) + 1
        name = cmd.get("name") or ""
        key = (name, ctype)
        if key in seen:
            errors.add(
                [i, "name"], "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
            )
        seen.add(key)
        _check_localizations(errors, [i], cmd, slash=ctype == 1, description=ctype == 1)
        if ctype == 1:
            if not slash_name_ok(name):
                errors.add([i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            desc = cmd.get("description") or ""
            if not 1 <= len(desc) <= 100:
                errors.add([i, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            _check_options(errors, [i, "options"], cmd.get("options") or [], depth=0)
        elif not 1 <= len(name) <= 32:
            errors.add([i, "name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
    if counts[1] > 100:
        errors.add(
            ["_commands"],
            "APPLICATION_COMMANDS_TOO_MANY",
            "Maximum number of application commands reached (100)",
        )
    for t in (2, 3):
        if counts.get(t, 0) > 5:
            errors.add(
                ["_commands"],
                "APPLICATION_COMMANDS_TOO_MANY_CONTEXT_MENU",
                "Maximum number of context menu commands reached (5)",
            )
    return errors.body()


def _check_options(
    errors: _Errors, path: list[str | int], options: list[dict[str, Any]], *, depth: int
) -> None:
    if len(options) > 25:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    names: set[str] = set()
    for j, opt in enumerate(options):
        name = opt.get("name") or ""
        if not slash_name_ok(name):
            errors.add([*path, j, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        _check_localizations(errors, [*path, j], opt, slash=True, description=True)
        if name in names:
            errors.add(
                [*path, j, "name"],
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        names.add(name)
        desc = opt.get("description") or ""
        if not 1 <= len(desc) <= 100:
            errors.add(
                [*path, j, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        otype = opt.get("type")
        if otype in (1, 2):
            if depth >= 2 or (otype == 2 and depth >= 1):
                errors.add(
                    [*path, j], "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Subcommands nested too deeply"
                )
            _check_options(errors, [*path, j, "options"], opt.get("options") or [], depth=depth + 1)
            continue
        if opt.get("required"):
            if seen_optional:
                errors.add(
                    [*path, j],
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        choices = opt.get("choices") or []
        for k, choice in enumerate(choices):
            where = [*path, j, "choices", k]
            _check_localizations(errors, where, choice, slash=False, description=False, name_max=100)
        if len(choices) > 25:
            errors.add([*path, j, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if choices and opt.get("autocomplete"):
            errors.add(
                [*path, j, "autocomplete"],
                "APPLICATION_COMMAND_OPTION_CHOICES_AUTOCOMPLETE",
                "Autocomplete cannot be set with choices",
            )
