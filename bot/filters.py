"""A server's prompt filters: blocked words and regular expressions, bounded in cost.

Patterns run on RE2 (`google-re2`): no backtracking, so `(a+)+$` cannot hang the bot the way it
would hang Python's `re`. But RE2's time is linear in the prompt *and* in the compiled program,
and a 20-character pattern such as `(\\w+\\W?){1000}Q` compiles to 39,000 instructions. Measured on
4,000-character prompts crafted so that RE2's DFA thrashes and falls back to its NFA, the worst
patterns cost about 10 ms per thousand instructions (`tests/reliability/test_filter_cost.py`).
So:

* each pattern is at most `MAX_PATTERN_PROGRAM` instructions (RE2's `programsize`), and a server's
  patterns together at most `MAX_TOTAL_PROGRAM`; a pattern over either bound is refused when it
  is added, saying why (`FilterError`). The worst a server can install costs ~50 ms per prompt;
* matching never runs on the event loop: `FilterRunner` runs it on its own thread (RE2 releases
  the GIL while it matches), one check at a time per server, so a server flooding long prompts
  queues behind itself, not in front of other servers;
* patterns stored before these bounds existed that break them are *ignored* (`FilterSet.ignored`):
  not matched, shown as such by `/config filter list`, told once to the server's moderator log,
  and dropped the next time the server's patterns are changed.

Words match whole words, case-insensitively (after Unicode case folding). They are compiled into
RE2 alternations of literals, which RE2's DFA runs in time linear in the prompt whatever the
words; in chunks of 4 kB, because compiling holds the GIL. 500 words of 100 characters cost
a few ms per prompt, off the loop.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import re2

from bot.refusals import Refusal, RefusalCode

MAX_WORDS = 500
MAX_WORD_LENGTH = 100
MAX_PATTERNS = 50
MAX_PATTERN_LENGTH = 300
# RE2 instructions (`programsize`): a 300-character alternation of words is about 300.
MAX_PATTERN_PROGRAM = 1000
MAX_TOTAL_PROGRAM = 5000
# RE2's memory budget for one compiled pattern, and for a server's words (its default is 8 MiB).
MAX_PATTERN_MEMORY = 1 << 20
MAX_WORDS_MEMORY = 4 << 20
WORDS_CHUNK_BYTES = 4096
# Compiled filter sets kept (one per distinct word and pattern list in use).
FILTER_SET_CACHE = 64
# Python's `\w` for str, in RE2: letters, digits (all numbers) and the underscore.
_WORD_CHAR = r"[\pL\pN_]"


class FilterError(Refusal):
    """The word or pattern cannot be used (a `Refusal`: its code says why, for the moderator)."""


def _options(*, case_sensitive: bool = False, max_mem: int = MAX_PATTERN_MEMORY) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = max_mem
    options.log_errors = False
    options.never_capture = True  # only "does it match" is asked: no submatch work
    return options


@functools.lru_cache(maxsize=2048)
def compile_pattern(pattern: str) -> re2._Regexp[str]:
    """The compiled, case-insensitive pattern; `FilterError` when RE2 refuses it or it is over
    `MAX_PATTERN_PROGRAM` instructions."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise FilterError(RefusalCode.PATTERN_TOO_LONG, limit=MAX_PATTERN_LENGTH)
    try:
        regex = re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise FilterError(RefusalCode.PATTERN_INVALID, reason=reason) from None
    if regex.programsize > MAX_PATTERN_PROGRAM:
        raise FilterError(RefusalCode.PATTERN_TOO_COMPLEX, size=regex.programsize, limit=MAX_PATTERN_PROGRAM)
    return regex


def program_size(pattern: str) -> int:
    return compile_pattern(pattern).programsize


def check_pattern(pattern: str) -> str:
    """The pattern, trimmed, if it can be used on its own; else `FilterError`."""
    pattern = pattern.strip()
    if not pattern:
        raise FilterError(RefusalCode.PATTERN_EMPTY)
    compile_pattern(pattern)
    return pattern


def check_patterns(patterns: Sequence[str]) -> None:
    """A server's whole pattern list: each usable, and together within `MAX_TOTAL_PROGRAM`."""
    if len(patterns) > MAX_PATTERNS:
        raise FilterError(RefusalCode.TOO_MANY_PATTERNS, limit=MAX_PATTERNS)
    total = sum(program_size(check_pattern(p)) for p in patterns)
    if total > MAX_TOTAL_PROGRAM:
        raise FilterError(RefusalCode.PATTERNS_TOO_COSTLY, total=total, limit=MAX_TOTAL_PROGRAM)


def check_word(word: str) -> str:
    """The word, trimmed, if it can be used; else `FilterError`."""
    word = word.strip()
    if not word:
        raise FilterError(RefusalCode.WORD_EMPTY)
    if len(word) > MAX_WORD_LENGTH:
        raise FilterError(RefusalCode.WORD_TOO_LONG, limit=MAX_WORD_LENGTH)
    return word


def check_words(words: Sequence[str]) -> None:
    """A server's whole word list: within `MAX_WORDS`."""
    if len(words) > MAX_WORDS:
        raise FilterError(RefusalCode.TOO_MANY_WORDS, limit=MAX_WORDS)


def usable_patterns(patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """(kept, ignored): stored patterns in order, while each compiles within the bounds and the
    running total stays within `MAX_TOTAL_PROGRAM`; the others (stored before the bounds) ignored."""
    kept: list[str] = []
    ignored: list[str] = []
    total = 0
    for pattern in patterns:
        try:
            size = program_size(pattern)
        except FilterError:
            ignored.append(pattern)
            continue
        if len(kept) >= MAX_PATTERNS or total + size > MAX_TOTAL_PROGRAM:
            ignored.append(pattern)
            continue
        kept.append(pattern)
        total += size
    return kept, ignored


@dataclass(frozen=True, slots=True)
class FilterSet:
    """A server's filters, compiled: one RE2 for the words, one per usable pattern."""

    words: tuple[re2._Regexp[str], ...]
    patterns: tuple[re2._Regexp[str], ...]
    ignored: tuple[str, ...]
    program_size: int

    def matches(self, prompt: str) -> bool:
        """Whether the prompt is blocked. Blocking (RE2 releases the GIL): call it off the loop."""
        if self.words:
            folded = prompt.casefold()
            if any(regex.search(folded) for regex in self.words):
                return True
        return any(regex.search(prompt) for regex in self.patterns)


def _words_regexes(words: Sequence[str]) -> tuple[re2._Regexp[str], ...]:
    """Whole words as RE2 alternations (case folded): a word char must not touch either end.

    In chunks of at most `WORDS_CHUNK_BYTES`: RE2 holds the GIL while it compiles (about 6 ms per
    10 kB of words), so one big alternation would stall the event loop; each chunk stays short.
    """
    folded = sorted({w.casefold() for w in words if w})
    chunks: list[list[str]] = []
    size = WORDS_CHUNK_BYTES
    for word in folded:
        length = len(word.encode())
        if size + length > WORDS_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(re2.escape(word))
        size += length
    other = _WORD_CHAR[1:-1]
    # Measured: 500 words of 100 emoji compile (to 200k instructions in all) within this budget.
    options = _options(case_sensitive=True, max_mem=MAX_WORDS_MEMORY)
    compiled = []
    for chunk in chunks:
        compiled.append(re2.compile(f"(?:^|[^{other}])(?:{'|'.join(chunk)})(?:[^{other}]|$)", options))
        time.sleep(0)  # hand the GIL to the event loop if it is waiting
    return tuple(compiled)


@functools.lru_cache(maxsize=FILTER_SET_CACHE)
def filter_set(words: tuple[str, ...], patterns: tuple[str, ...]) -> FilterSet:
    """The compiled filters for a word and pattern list (cached; compiling is blocking too)."""
    kept, ignored = usable_patterns(patterns)
    compiled = tuple(compile_pattern(p) for p in kept)
    return FilterSet(
        words=_words_regexes(words),
        patterns=compiled,
        ignored=tuple(ignored),
        program_size=sum(r.programsize for r in compiled),
    )


def blocked(words: Iterable[str], patterns: Iterable[str], prompt: str) -> bool:
    """Whether any word or usable pattern matches the prompt (blocking: see `FilterRunner`)."""
    return filter_set(tuple(words), tuple(patterns)).matches(prompt)


@dataclass(frozen=True, slots=True)
class Verdict:
    blocked: bool
    ignored: tuple[str, ...] = ()  # stored patterns that were skipped (over the bounds)


def _check(words: tuple[str, ...], patterns: tuple[str, ...], prompt: str) -> Verdict:
    filters = filter_set(words, patterns)
    return Verdict(filters.matches(prompt), filters.ignored)


class FilterRunner:
    """Checks prompts off the event loop: on one thread of its own, one check at a time per server.

    RE2 releases the GIL while it matches, so the loop keeps running during a check. One thread
    bounds the CPU all servers' filters can take together; the per-server lock means a server
    flooding long prompts waits behind its own checks, and another server's check waits for at
    most one check of each busy server (at most ~50 ms each, by the bounds above).
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    async def check(
        self, guild_id: int, words: Sequence[str], patterns: Sequence[str], prompt: str
    ) -> Verdict:
        if not words and not patterns:
            return Verdict(False)
        lock, users = self._locks.get(guild_id, (asyncio.Lock(), 0))
        self._locks[guild_id] = (lock, users + 1)
        try:
            async with lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="filters")
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._executor, _check, tuple(words), tuple(patterns), prompt
                )
        finally:
            lock, users = self._locks[guild_id]
            if users <= 1:
                del self._locks[guild_id]
            else:
                self._locks[guild_id] = (lock, users - 1)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
