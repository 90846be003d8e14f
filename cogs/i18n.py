"""Languages: the gettext catalogs, compiled and loaded, which language a reader gets, and the check.

One `.po` file per language (`cogs/locales/<lang>/LC_MESSAGES/messages.po`); the msgids are the
catalog's stable keys (`refusal.no_key`, `command.imagine.description`, ...), and the English
file holds the English text. The `.po` sources are compiled to `.mo` by `compile_catalogs`, the
one function every path uses: the package build (`setup.py`'s `build_py` step, so an installed
bot carries its `.mo` files), the test session (`tests/conftest.py`), `scripts/run-bot` and
`python -m cogs.i18n compile`. The `.mo` files are not in git. `catalog(lang)` loads one, once,
and fails loudly (`CatalogMissing`) when it is absent, or older than its `.po` in a source tree:
no reader ever silently gets keys instead of sentences.

`language(locale)` maps any Discord locale to a catalog language: `vi` → Vietnamese, everything
else → English (`en-US`, `en-GB`, and languages we have no catalog for).

`python -m cogs.i18n check` lists what is wrong with the catalogs (see `problems`): keys in one
language and not another, keys the code uses that no catalog has, entries nothing uses, and
placeholders (`{credits}`) that differ between languages. This module imports only the standard
library and Babel, so `setup.py` can use it before anything else is installed.
"""

from __future__ import annotations

import argparse
import ast
import re
import string
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

DOMAIN = "messages"
LANGUAGES: tuple[str, ...] = ("en", "vi")  # the first is the fallback for every other locale
DEFAULT = LANGUAGES[0]
LOCALES = Path(__file__).resolve().parent / "locales"
CODE = Path(__file__).resolve().parent  # the Discord adapter: every member-facing text is asked for here

# Keys asked for by building them at run time: the check counts an entry under one of these as
# used. Each family is covered by a test over its source (the enum, the command tree).
DYNAMIC_FAMILIES = ("command.", "choice.")
_KEY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")  # what a key looks like: `refusal.no_key`
_FILE = re.compile(r"\.(png|jpe?g|webp|txt)$")  # file names look like keys too: `usage.png`


class CatalogMissing(RuntimeError):
    """A language's compiled catalog is absent or stale: the install (or the source tree) is broken."""


def language(locale: object) -> str:
    """The catalog language for a Discord locale (`discord.Locale` or its value): see the docstring."""
    value = str(getattr(locale, "value", locale) or "").lower()
    primary = value.split("-")[0]
    return primary if primary in LANGUAGES else DEFAULT


def po_path(lang: str, root: Path = LOCALES) -> Path:
    return root / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(lang: str, root: Path = LOCALES) -> Path:
    return root / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"


def read_source(lang: str, root: Path = LOCALES) -> Catalog:
    with po_path(lang, root).open("rb") as f:
        return read_po(f, locale=lang, domain=DOMAIN)


def compile_catalogs(dest: Path = LOCALES, source: Path = LOCALES) -> list[Path]:
    """Compile every language's `.po` under `source` into a `.mo` under `dest`; the files written.

    A fuzzy entry is not a translation yet: it is left out (and `check` names it as missing)."""
    written = []
    for lang in LANGUAGES:
        catalog = read_source(lang, source)
        target = mo_path(lang, dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as f:
            write_mo(f, catalog, use_fuzzy=False)
        written.append(target)
    return written


@dataclass(frozen=True)
class Loaded:
    """One language's compiled catalog: gettext lookups and which keys have plural forms."""

    lang: str
    translations: Translations
    keys: frozenset[str]
    plurals: frozenset[str]


@cache
def catalog(lang: str) -> Loaded:
    """The compiled catalog of `lang` (one of `LANGUAGES`), loaded once; `CatalogMissing` if absent."""
    return load(lang, LOCALES)


def load(lang: str, root: Path) -> Loaded:
    """Load `lang`'s compiled catalog under `root` (see `catalog`)."""
    if lang not in LANGUAGES:
        raise CatalogMissing(f"no catalog for language {lang!r} (have {', '.join(LANGUAGES)})")
    path, source = mo_path(lang, root), po_path(lang, root)
    hint = "run `python -m cogs.i18n compile` (or install the package, which compiles them)"
    if not path.is_file():
        raise CatalogMissing(f"the {lang} message catalog {path} is missing: {hint}")
    if source.is_file() and source.stat().st_mtime > path.stat().st_mtime:
        raise CatalogMissing(f"the {lang} message catalog {path} is older than {source.name}: {hint}")
    with path.open("rb") as f:
        compiled = read_mo(f)
        f.seek(0)
        translations = Translations(f, domain=DOMAIN)
    keys = {_key(m.id) for m in compiled if m.id}
    plurals = {_key(m.id) for m in compiled if m.id and m.pluralizable}
    return Loaded(lang, translations, frozenset(keys), frozenset(plurals))


def _key(msgid: str | tuple[str, ...] | list[str]) -> str:
    return msgid if isinstance(msgid, str) else msgid[0]


# -- the check -------------------------------------------------------------------------------------


def placeholders(template: str) -> frozenset[str]:
    """The named fields of a `str.format` template (`{credits}` → "credits"; `{{` is a brace)."""
    return frozenset(field for _, field, _, _ in string.Formatter().parse(template) if field)


def entries(cat: Catalog) -> dict[str, list[str]]:
    """Key → its translated forms (one, or one per plural form); untranslated and fuzzy ones left out."""
    out: dict[str, list[str]] = {}
    for m in cat:
        if not m.id or m.fuzzy:
            continue
        forms = [m.string] if isinstance(m.string, str) else list(m.string or ())
        forms = [f for f in forms if f]
        if forms:
            out[_key(m.id)] = forms
    return out


def used_keys(root: Path = CODE, families: Iterable[str] = ()) -> tuple[set[str], set[str]]:
    """Keys the adapter's code names: (string literals in a catalog family, f-string key prefixes).

    A literal counts when its first dotted part is one of `families` (log event names passed to
    `kv(...)` don't); an f-string such as `f"refusal.{code}"` yields its prefix `refusal.`."""
    families = tuple(families)
    literals: set[str] = set()
    prefixes: set[str] = set()
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = {
            id(node.args[0])
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "kv"
            and node.args
        }
        parts = {
            id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
        }
        for node in ast.walk(tree):
            if id(node) in parts:
                continue  # a piece of an f-string: its prefix is counted below
            if isinstance(node, ast.JoinedStr) and node.values:
                first = node.values[0]
                if (
                    isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and first.value.split(".")[0] in families
                    and first.value.endswith(".")
                ):
                    prefixes.add(first.value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                value = node.value
                if _KEY.fullmatch(value) and value.split(".")[0] in families and not _FILE.search(value):
                    literals.add(value)
    return literals, prefixes


def problems(root: Path = LOCALES, code: Path = CODE) -> list[str]:
    """Everything wrong with the catalogs, one line each (empty: all good)."""
    found: list[str] = []
    catalogs = {lang: entries(read_source(lang, root)) for lang in LANGUAGES}
    reference = catalogs[DEFAULT]
    every = set().union(*catalogs.values())
    for lang, entries_ in catalogs.items():
        for key in sorted(every - entries_.keys()):
            found.append(f"{lang}: missing {key}")
        for key, forms in sorted(entries_.items()):
            if key not in reference:
                continue
            expected = placeholders(reference[key][0]).union(*(placeholders(f) for f in reference[key]))
            for form in forms:
                got = placeholders(form)
                if got - expected or (expected - got - {"count"}):
                    found.append(
                        f"{lang}: {key} has placeholders {sorted(got)}, English has {sorted(expected)}"
                    )
    families = {key.split(".")[0] for key in every}
    literals, prefixes = used_keys(code, families)
    for key in sorted(literals - every):
        found.append(f"code: {key} is used but no catalog has it")
    dynamic = (*prefixes, *DYNAMIC_FAMILIES)
    for key in sorted(every - literals):
        if not key.startswith(dynamic):
            found.append(f"catalog: {key} is not used by the code")
    return found


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cogs.i18n", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("check", "compile"))
    args = parser.parse_args(argv)
    if args.action == "compile":
        for path in compile_catalogs():
            print(f"compiled {path}")
        return 0
    found = problems()
    for line in found:
        print(line)
    print(f"{len(found)} problem(s) in the {', '.join(LANGUAGES)} catalogs", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(_main())
