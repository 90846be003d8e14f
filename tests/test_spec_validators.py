"""The fake Discord's two spec validators give the same verdict (`tests/fakediscord/openapi.py`).

The fake answers a body that the compiled validator (`SpecValidator.fits`, jsonschema-rs) finds valid
without asking `jsonschema` (`SpecValidator.check`, the reference, which also builds Discord's errors).
That is only faithful if `fits` never accepts what `check` refuses. Held here on the bodies the bot
really sends and on broken variants of each.

`tests/spec_bodies.json`: one body of each shape (keys and types) that the bot sent in a run of
`tests/e2e` (the command sync split into one body per command), recorded from the fake's validator.
Shapes the bot starts sending later are cross-checked by the fake itself (`ValidatorPool.judge`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.fakediscord.openapi import SpecValidator, ValidatorPool

CORPUS = Path(__file__).with_name("spec_bodies.json")


def _variants(body: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value to put there): a null everywhere, and per JSON type the values Discord's limits
    and types turn on (too long, too big, wrong type, missing or unknown keys, too many items)."""
    yield path, None
    if isinstance(body, bool):
        yield path, 1
    elif isinstance(body, int):
        yield from ((path, v) for v in (2**53, -1, "12"))
    elif isinstance(body, str):
        yield from ((path, v) for v in ("", "x" * 5000, 7))
    elif isinstance(body, list):
        yield path, []
        yield path, (body * 101)[:101]
        for i, item in enumerate(body):
            yield from _variants(item, (*path, i))
    elif isinstance(body, dict):
        for key in body:
            yield path, {k: v for k, v in body.items() if k != key}
        yield path, {**body, "zzz_unknown": 1}
        for key, item in body.items():
            yield from _variants(item, (*path, key))


def _put(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    body = copy.deepcopy(body)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


def _label(path: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    """One variant per place in the schema (list indices folded) and kind of value."""
    kind = f"{type(value).__name__}{len(value)}" if isinstance(value, dict | list) else repr(value)[:40]
    return (*("[]" if isinstance(k, int) else k for k in path), kind)


def test_the_fast_validator_agrees_with_jsonschema_on_what_the_bot_sends_and_its_broken_variants() -> None:
    corpus = json.loads(CORPUS.read_text())
    assert len(corpus) >= 40 and {t for t, _, _ in corpus} >= {
        "/interactions/{interaction_id}/{interaction_token}/callback",
        "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
        "/webhooks/{webhook_id}/{webhook_token}",
        "/channels/{channel_id}/messages",
        "/applications/{application_id}/commands",
    }
    validators = SpecValidator()
    seen: set[tuple[Any, ...]] = set()
    judged = valid = 0
    disagreements = []
    for template, method, body in corpus:
        assert validators.check(template, method, body) is None, (template, body)  # as recorded: valid
        reference = validators._validator(template, method)
        for path, value in _variants(body):
            label = (template, method, *_label(path, value))
            if label in seen:
                continue
            seen.add(label)
            variant = _put(body, path, value)
            fits = validators.fits(template, method, variant)
            # `check`'s first judgement (before it turns integers inside unions into snowflakes): a
            # body valid to it is valid to `check`.
            expected = reference.is_valid(validators._normalise(template, method, variant))
            judged += 1
            valid += expected
            if fits != expected:
                disagreements.append((label, fits, expected))
    assert not disagreements, disagreements[:10]
    # The variants exercise both verdicts, on every route.
    assert judged > 800 and 300 < valid < judged - 300, (judged, valid)


async def test_a_body_of_a_known_shape_is_not_sent_to_the_worker() -> None:
    callback = "/interactions/{interaction_id}/{interaction_token}/callback"
    first = {"type": 4, "data": {"content": "first", "allowed_mentions": {"parse": []}, "flags": 64}}
    same_shape = {"type": 4, "data": {"content": "x" * 2000, "allowed_mentions": {"parse": []}, "flags": 0}}
    too_long = {"type": 4, "data": {"content": "x" * 2001, "allowed_mentions": {"parse": []}, "flags": 0}}
    before = ValidatorPool.worker_checks
    assert (await ValidatorPool.judge(callback, "post", first))[0] is None
    crosschecked = ValidatorPool.worker_checks - before
    assert crosschecked in (0, 1)  # 1 unless this shape was judged earlier in this process
    assert (await ValidatorPool.judge(callback, "post", same_shape))[0] is None
    assert ValidatorPool.worker_checks - before == crosschecked  # valid and known: judged here alone
    verdict, _ = await ValidatorPool.judge(callback, "post", too_long)
    assert verdict is not None and verdict["code"] == 50035
    assert verdict["errors"]["data"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert ValidatorPool.worker_checks - before == crosschecked + 1  # refused here: the worker's errors
