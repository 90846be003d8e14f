"""The message catalogs: complete in every language, checked, compiled into the package, loaded loudly.

The end-to-end proof that members read their language is `tests/e2e/test_languages.py`; this is
the catalogs themselves: `python -m cogs.i18n check` finds nothing wrong, and finds each kind of
mistake when one is made; every reason code and notice kind has its text; plural forms follow
each language's rules; a missing compiled catalog is one clear error; the package build carries
the compiled catalogs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po
from cryptography.fernet import Fernet

from bot.engine import NoticeKind
from bot.guild_settings import LANGUAGES
from bot.hub import HubError, InsufficientCredits, InvalidRequest
from bot.refusals import RefusalCode
from cogs import i18n, messages
from cogs.admin import LANGUAGE_CHOICES

ROOT = Path(__file__).resolve().parent.parent


def test_every_key_is_in_every_language_with_the_same_placeholders() -> None:
    assert i18n.problems() == []
    english, vietnamese = (set(i18n.entries(i18n.read_source(lang))) for lang in ("en", "vi"))
    assert english == vietnamese and len(english) > 400


def test_the_check_command_passes_on_the_repository() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cogs.i18n", "check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 problem(s)" in done.stderr


def _copy_catalogs(tmp_path: Path) -> Path:
    root = tmp_path / "locales"
    for lang in i18n.LANGUAGES:
        target = i18n.po_path(lang, root)
        target.parent.mkdir(parents=True)
        shutil.copy(i18n.po_path(lang), target)
    return root


def _edit(root: Path, lang: str, key: str, text: str | None) -> None:
    """Change (or with None remove) one entry of a copied catalog."""
    path = i18n.po_path(lang, root)
    with path.open("rb") as f:
        catalog = read_po(f, locale=lang)
    if text is None:
        catalog.delete(key)
    elif key in catalog:
        catalog[key].string = text
    else:
        catalog.add(key, text)
    with path.open("wb") as f:
        write_po(f, catalog, width=0)


def test_the_check_finds_each_kind_of_mistake(tmp_path: Path) -> None:
    root = _copy_catalogs(tmp_path)
    _edit(root, "vi", "refusal.prompt_empty", None)  # missing in one language
    _edit(root, "vi", "refusal.prompt_too_long", "Prompt dài {length} ký tự.")  # a placeholder lost
    _edit(root, "vi", "refusal.count_invalid", "Từ 1 đến {limt} ảnh.")  # a placeholder misspelt
    _edit(root, "en", "refusal.never_asked", "Nothing asks for this.")  # unused (and missing in vi)
    found = i18n.problems(root)
    assert "vi: missing refusal.prompt_empty" in found
    assert any(line.startswith("vi: refusal.prompt_too_long has placeholders") for line in found)
    assert any(line.startswith("vi: refusal.count_invalid has placeholders") for line in found)
    assert (
        "catalog: refusal.never_asked is not used by the code" not in found
    )  # `refusal.` is built at run time
    assert "vi: missing refusal.never_asked" in found
    _edit(root, "en", "field.prompt", None)
    _edit(root, "vi", "field.prompt", None)
    _edit(root, "en", "field.never_asked", "Never")
    _edit(root, "vi", "field.never_asked", "Không bao giờ")
    found = i18n.problems(root)
    assert "code: field.prompt is used but no catalog has it" in found
    assert "catalog: field.never_asked is not used by the code" in found


def test_every_reason_code_and_notice_kind_has_its_text() -> None:
    """The keys the code builds at run time (`refusal.<code>`, `notice.<kind>`): every one exists, and
    no entry of those families is left over."""
    keys = set(i18n.entries(i18n.read_source("en")))
    refusals = {f"refusal.{code.value}" for code in RefusalCode} | {"refusal.quota_exceeded.resets"}
    notices = {f"notice.{kind.value}" for kind in NoticeKind}
    assert refusals <= keys and notices <= keys
    assert {k for k in keys if k.startswith("refusal.")} == refusals
    extra_notices = {"notice.title", "notice.other", "notice.hub_said", "notice.refunded", "notice.counted"}
    # A job paid by the member's own key tells some endings in their words (`<kind>.personal`).
    personal = {f"notice.{kind}.personal" for kind in ("bad_key", "insufficient_credits", "no_key")}
    assert {k.removesuffix(".personal") for k in personal} <= notices
    assert {k for k in keys if k.startswith("notice.")} == notices | extra_notices | personal | {
        "notice.nothing_charged"
    }


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_form_and_button_texts_fit_discord_s_limits(lang: str) -> None:
    """A form's title and its fields' labels are at most 45 characters, a button's label 80: longer,
    Discord refuses the form or the message (translations run longer than English)."""
    for key, forms in i18n.entries(i18n.read_source(lang)).items():
        limit = 45 if key.startswith("form.") else 80 if key.startswith("button.") else None
        assert limit is None or all(len(form) <= limit for form in forms), (lang, key, forms)


@pytest.mark.parametrize(
    ("locale", "one", "four"),
    [
        ("en-US", "1 image", "4 images"),
        ("en-GB", "1 image", "4 images"),
        ("vi", "1 ảnh", "4 ảnh"),
    ],
)
def test_plural_forms_for_one_and_four_images(locale: str, one: str, four: str) -> None:
    w = messages.words(locale)
    assert w("job.images", count=1) == one
    assert w("job.images", count=4) == four


def test_english_picks_its_form_and_vietnamese_has_one() -> None:
    en, vi = messages.words("en-US"), messages.words("vi")
    assert en("result.not_downloaded", count=1) == "1 image could not be downloaded from the hub."
    assert en("result.not_downloaded", count=4) == "4 images could not be downloaded from the hub."
    assert vi("result.not_downloaded", count=1) == "Không tải được 1 ảnh từ hub."
    assert vi("result.not_downloaded", count=4) == "Không tải được 4 ảnh từ hub."


def test_numbers_are_written_the_language_s_way_and_job_numbers_stay_plain() -> None:
    en, vi = messages.words("en-US"), messages.words("vi")
    assert en("refusal.prompt_too_long", length=12345, limit=4000).startswith(
        "Your prompt is 12,345 characters"
    )
    assert vi("refusal.prompt_too_long", length=12345, limit=4000) == (
        "Prompt của bạn dài 12.345 ký tự, tối đa chỉ được 4.000."
    )
    assert vi("modlog.unpostable", job=12345, channel="<#1>", permissions="x").endswith(
        "`/xem-lại 12345` sẽ đăng lại."
    )


@pytest.mark.parametrize(
    ("locale", "language"),
    [("vi", "vi"), ("en-US", "en"), ("en-GB", "en"), ("fr", "en"), ("zh-CN", "en"), (None, "en"), ("", "en")],
)
def test_any_locale_without_a_catalog_reads_english(locale: str | None, language: str) -> None:
    assert i18n.language(locale) == language


def test_a_missing_compiled_catalog_is_one_clear_error(tmp_path: Path) -> None:
    root = _copy_catalogs(tmp_path)
    with pytest.raises(
        i18n.CatalogMissing, match=r"the vi message catalog .* is missing: run `python -m cogs.i18n"
    ):
        i18n.load("vi", root)
    i18n.compile_catalogs(dest=root, source=root)
    assert "refusal.no_key" in i18n.load("vi", root).keys
    stale = i18n.mo_path("vi", root).stat().st_mtime + 10
    os.utime(i18n.po_path("vi", root), (stale, stale))  # the source changed after compiling
    with pytest.raises(i18n.CatalogMissing, match=r"is older than messages\.po"):
        i18n.load("vi", root)


@pytest.mark.timeout(300)
def test_the_package_build_carries_the_compiled_catalogs(tmp_path: Path) -> None:
    """The Docker image installs the built package: its wheel has every language's `.mo`."""
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", "*.mo", "build", "*.egg-info", "__pycache__", ".git"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = tmp_path.glob("image_hub_bot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for lang in i18n.LANGUAGES:
        assert f"cogs/locales/{lang}/LC_MESSAGES/messages.mo" in names
    assert not list((source / "cogs").rglob("*.mo")), "the build compiles into the package, not the sources"
    # Installed (not editable) and run from elsewhere, it speaks both languages.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    speak = (
        "import sys; sys.path.insert(0, sys.argv[1]); from cogs.messages import words; "
        "print(words('vi')('job.images', count=4), words('en-US')('job.images', count=4))"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-I", "-c", speak, str(site)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4 ảnh 4 images"


@pytest.mark.timeout(120)
def test_the_bot_without_its_compiled_catalogs_stops_with_one_line(tmp_path: Path) -> None:
    """A broken install (no `.mo`) is told before anything connects: one line, exit 4."""
    tree = tmp_path / "tree"
    for package in ("bot", "cogs"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("*.mo", "__pycache__"))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DISCORD_TOKEN": "x" * 59,
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tree, env=env, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 4, done.stdout + done.stderr
    said = [line for line in (done.stdout + done.stderr).splitlines() if "catalog" in line]
    assert len(said) == 1 and "python -m cogs.i18n compile" in said[0], said


def test_hub_errors_are_told_by_their_code_with_the_hub_s_words_quoted_and_clamped() -> None:
    vi = messages.words("vi")
    said = messages.hub_error(vi, InvalidRequest("Prompt `rejected` " + "x" * 1000, status=400))
    assert said.startswith("Hub ảnh từ chối vì yêu cầu không hợp lệ. Hub báo: “Prompt 'rejected' x")
    quoted = said[said.index("“") + 1 : said.index("”")]
    assert len(quoted) == messages.HUB_MESSAGE_MAX and quoted.endswith("…") and "`" not in quoted
    # Where our words say it all, the hub's (English) words are not added.
    assert messages.hub_error(vi, InsufficientCredits("Insufficient credits", status=402)) == vi(
        "hub_error.insufficient_credits"
    )
    assert messages.hub_error(vi, HubError("teapot", status=418, code="teapot")).startswith(
        vi("hub_error.refused")
    )
    assert messages.hub_error(vi, RuntimeError("bug")) == vi("error.unexpected")


def test_credit_amounts_take_their_plural_form_from_the_catalog() -> None:
    en, vi = messages.words("en-US"), messages.words("vi")
    assert en("credits.amount", count=1) == "1 credit" and en("credits.amount", count=1234) == "1,234 credits"
    assert en("notice.refunded", count=1) == "1 credit was returned to your budget."
    assert en("notice.refunded", count=8) == "8 credits were returned to your budget."
    assert (
        vi("credits.amount", count=1) == "1 tín dụng" and vi("credits.amount", count=1234) == "1.234 tín dụng"
    )


def test_the_language_setting_offers_exactly_the_catalogs() -> None:
    """`/config language` (the core's setting and the command's choices) and the catalogs agree."""
    assert set(LANGUAGES) == {"auto", *i18n.LANGUAGES}
    assert [c.value for c in LANGUAGE_CHOICES] == list(LANGUAGES)
