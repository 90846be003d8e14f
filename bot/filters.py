"""A server's prompt filters: blocked words and regular expressions.

Patterns run on RE2 (`google-re2`), which matches in time linear in the prompt whatever the
pattern: a hostile or careless pattern such as `(a+)+$` cannot hang the bot the way it would
hang Python's backtracking `re`. On top of that a pattern is capped in length, in compiled size
(RE2's memory budget) and in number per server. RE2 has no backreferences or look-arounds;
such a pattern is refused when it is added, with RE2's reason.

Words match whole words, case-insensitively (after Unicode case folding).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import re2

MAX_WORDS = 500
MAX_WORD_LENGTH = 100
MAX_PATTERNS = 50
MAX_PATTERN_LENGTH = 300
# RE2's memory budget for one compiled pattern (its default is 8 MiB).
MAX_PATTERN_MEMORY = 1 << 20


class FilterError(ValueError):
    """The word or pattern cannot be used; `str()` says why, for the moderator who typed it."""


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = MAX_PATTERN_MEMORY
    options.log_errors = False
    return options


@functools.lru_cache(maxsize=2048)
def compile_pattern(pattern: str) -> re2._Regexp[str]:
    """The compiled, case-insensitive pattern; `FilterError` when RE2 refuses it."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise FilterError(f"A pattern may be at most {MAX_PATTERN_LENGTH} characters long.")
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise FilterError(f"That pattern isn't valid here: {reason}.") from None


def check_pattern(pattern: str) -> str:
    """The pattern, trimmed, if it can be used; else `FilterError`."""
    pattern = pattern.strip()
    if not pattern:
        raise FilterError("The pattern is empty.")
    compile_pattern(pattern)
    return pattern


def check_word(word: str) -> str:
    """The word, trimmed, if it can be used; else `FilterError`."""
    word = word.strip()
    if not word:
        raise FilterError("The word is empty.")
    if len(word) > MAX_WORD_LENGTH:
        raise FilterError(f"A blocked word may be at most {MAX_WORD_LENGTH} characters long.")
    return word


@functools.lru_cache(maxsize=4096)
def _word_regex(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(word.casefold())}(?!\w)")


def blocked(words: Iterable[str], patterns: Iterable[str], prompt: str) -> bool:
    """Whether any word or pattern matches the prompt. A pattern that no longer compiles
    (stored before the rules tightened) is skipped."""
    lowered = prompt.casefold()
    if any(_word_regex(word).search(lowered) for word in words if word):
        return True
    for pattern in patterns:
        try:
            regex = compile_pattern(pattern)
        except FilterError:
            continue
        if regex.search(prompt):
            return True
    return False
