"""Discord's official OpenAPI spec, held against every request the fake receives.

Two halves:

- :class:`RouteIndex` (in the fake's process) maps a request path to the spec's path template
  (``/applications/{application_id}/commands``); a path the spec does not know is a failure of the test.
- :class:`SpecValidator` checks JSON bodies (and multipart ``payload_json``) against the request schema of
  their route (Draft 2020-12, one validator compiled per route and method), in two steps:

  1. ``fits``, in the fake's event loop: ``jsonschema-rs`` (compiled) says whether the body is valid, in
     microseconds. A valid body is answered at once.
  2. ``check``, for a body ``fits`` refuses: ``jsonschema`` with a ``referencing`` registry judges it again
     and builds Discord's 400 body (the ``errors`` tree naming each failing path). That takes milliseconds
     of pure Python, so it runs in ONE worker process started once per test process (done in the fake's
     event loop, which the in-process bot shares, it would bend the latencies the tests measure); the
     handler awaits it. Its verdict is the one that counts: a body it finds valid is answered as valid.

  Every body used to go through step 2 alone: on the benchmarks' two cores the worker then took more CPU
  than the bot did in a burst (0.85 s of 1.2 s), time a real Discord spends on its own servers. Step 1
  can only wave through what it finds valid, so the one way it could change a verdict is by accepting a
  body ``jsonschema`` refuses; ``tests/test_spec_validators.py`` holds the two to the same verdict on
  every body the bot sends in the e2e suites and on a thousand broken variants of them.

Snowflakes: the spec types ids as strings, while discord.py sends some as integers (``message_reference``
ids, attachment placeholders). Only fields whose schema is the ``SnowflakeType`` string are turned into
strings before judging; nothing else is coerced.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import copy
import functools
import json
import multiprocessing
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

SPEC_PATH = Path(__file__).resolve().parent / "spec" / "openapi.json"
SPEC_URI = "urn:discord:openapi"
_METHODS = ("get", "put", "post", "patch", "delete")


@functools.cache
def load_spec() -> dict[str, Any]:
    with SPEC_PATH.open("rb") as f:
        spec: dict[str, Any] = json.load(f)
    return spec


class RouteIndex:
    """Request path (relative to ``/api/v10``) → the spec's path template, per method."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        spec = spec if spec is not None else load_spec()
        entries: list[tuple[int, str, re.Pattern[str], frozenset[str]]] = []
        for template, item in spec["paths"].items():
            methods = frozenset(m.upper() for m in _METHODS if m in item)
            parts = re.split(r"(\{[^}]+\})", template)
            pattern = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
            params = sum(1 for p in parts if p.startswith("{"))
            entries.append((params, template, re.compile("^" + pattern + "$"), methods))
        # Literal segments win over parameters: /users/@me before /users/{user_id}.
        entries.sort(key=lambda e: e[0])
        self._entries = entries

    def match(self, method: str, path: str) -> str | None:
        """The template of ``method path``, or None when the spec has no such route."""
        found = self.match_params(method, path)
        return found[0] if found else None

    def match_params(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """The template and the path parameters' values, or None when the spec has no such route."""
        for _, template, pattern, methods in self._entries:
            if method.upper() in methods and (m := pattern.match(path)):
                return template, m.groupdict()
        return None


@functools.cache
def route_index() -> RouteIndex:
    return RouteIndex()


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class SpecValidator:
    """Request-body validators, one per (template, method), built when first needed: ``fits`` (fast, yes
    or no) and ``check`` (Discord's verdict)."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self._spec = spec if spec is not None else load_spec()
        self._registry: Any = None  # jsonschema's, built by the first `check`
        self._fast_registry: Any = None  # jsonschema-rs's, built by the first `fits`
        self._validators: dict[tuple[str, str], Any] = {}
        self._fast: dict[tuple[str, str], Any] = {}
        self._snowflake_paths: dict[tuple[str, str], frozenset[tuple[str, ...]]] = {}

    def has_body_schema(self, template: str, method: str) -> bool:
        op = self._spec["paths"].get(template, {}).get(method.lower(), {})
        return "application/json" in (op.get("requestBody") or {}).get("content", {})

    @staticmethod
    def _schema_pointer(template: str, method: str) -> str:
        body = ("requestBody", "content", "application/json", "schema")
        return _pointer("paths", template, method.lower(), *body)

    def _validator(self, template: str, method: str) -> Any:
        key = (template, method.lower())
        validator = self._validators.get(key)
        if validator is None:
            from jsonschema import Draft202012Validator
            from referencing import Registry, Resource
            from referencing.jsonschema import DRAFT202012

            if self._registry is None:
                resource = Resource.from_contents(self._spec, default_specification=DRAFT202012)
                self._registry = Registry().with_resource(SPEC_URI, resource).crawl()
            pointer = self._schema_pointer(template, method)
            validator = Draft202012Validator({"$ref": SPEC_URI + "#" + pointer}, registry=self._registry)
            self._validators[key] = validator
        return validator

    def _fast_validator(self, template: str, method: str) -> Any:
        key = (template, method.lower())
        validator = self._fast.get(key)
        if validator is None:
            import jsonschema_rs

            if self._fast_registry is None:
                self._fast_registry = jsonschema_rs.Registry([(SPEC_URI, self._spec)])
            # A URI fragment may not hold the template's braces: percent-encoded, as RFC 6901 allows.
            pointer = urllib.parse.quote(self._schema_pointer(template, method), safe="/~")
            # Formats stay annotations, as in `jsonschema` (Draft 2020-12's default).
            validator = jsonschema_rs.Draft202012Validator(
                {"$ref": SPEC_URI + "#" + pointer}, registry=self._fast_registry, validate_formats=False
            )
            self._fast[key] = validator
        return validator

    def _snowflakes(self, template: str, method: str) -> frozenset[tuple[str, ...]]:
        key = (template, method.lower())
        paths = self._snowflake_paths.get(key)
        if paths is None:
            content = self._spec["paths"][template][method.lower()]["requestBody"]["content"]
            places: dict[tuple[str, ...], set[bool]] = {}
            _collect(self._spec, content["application/json"]["schema"], (), places, set())
            # Only where every schema the spec has at that place is a snowflake: never coerce an integer
            # that some branch of a union wants as an integer.
            paths = frozenset(p for p, kinds in places.items() if kinds == {True})
            self._snowflake_paths[key] = paths
        return paths

    def _normalise(self, template: str, method: str, body: Any) -> Any:
        """Integers where the spec has a snowflake string, as strings (a copy; the rest untouched)."""
        paths = self._snowflakes(template, method)
        if not paths or not _has_int_at(body, paths, ()):
            return body
        return _stringify(copy.deepcopy(body), paths, ())

    def fits(self, template: str, method: str, body: Any) -> bool:
        """True when ``body`` is valid for the route (compiled validator: microseconds). False means only
        "ask ``check``": it judges again, and builds the errors (it also turns integers into snowflake
        strings inside unions, which the precomputed places miss)."""
        if not self.has_body_schema(template, method):
            return True
        valid: bool = self._fast_validator(template, method).is_valid(self._normalise(template, method, body))
        return valid

    def check(self, template: str, method: str, body: Any) -> dict[str, Any] | None:
        """None when ``body`` is valid for the route, else Discord's 400 body (50035, with an ``errors``
        tree naming each failing path)."""
        if not self.has_body_schema(template, method):
            return None
        validator = self._validator(template, method)
        body = self._normalise(template, method, body)
        errors = list(validator.iter_errors(body))
        for _ in range(8):  # what the precomputed places missed (unions nest): fix, judge again
            paths = [p for e in errors for p in _int_snowflakes(e)]
            if not paths:
                break
            body = copy.deepcopy(body)
            for path in paths:
                _set(body, path, str(_get(body, path)))
            errors = list(validator.iter_errors(body))
        if not errors:
            return None
        tree: dict[str, Any] = {}
        for error in errors:
            leaf = _best(error)
            path, code, message = _describe(leaf)
            node = tree
            for key in path:
                node = node.setdefault(str(key), {})
            node.setdefault("_errors", []).append({"code": code, "message": message})
        return {"message": "Invalid Form Body", "code": 50035, "errors": tree}


def _collect(
    spec: dict[str, Any],
    schema: Any,
    path: tuple[str, ...],
    out: dict[tuple[str, ...], set[bool]],
    seen: set[tuple[str, tuple[str, ...]]],
) -> None:
    """Walk a request schema (through $refs and unions) and note, for each place in a body (object keys,
    ``[]`` for array items), whether the spec wants a snowflake there (True) or something else (False)."""
    if not isinstance(schema, dict) or len(path) > 12:
        return
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        if (ref, path) in seen:
            return
        seen.add((ref, path))
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        _collect(spec, target, path, out, seen)
        return
    if schema.get("format") == "snowflake":
        out.setdefault(path, set()).add(True)
        return
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types or []
    if "integer" in types or "number" in types:
        out.setdefault(path, set()).add(False)
    for union in ("oneOf", "anyOf", "allOf"):
        for branch in schema.get(union) or ():
            _collect(spec, branch, path, out, seen)
    for name, sub in (schema.get("properties") or {}).items():
        _collect(spec, sub, (*path, name), out, seen)
    if isinstance(schema.get("items"), dict):
        _collect(spec, schema["items"], (*path, "[]"), out, seen)


def _has_int_at(value: Any, paths: frozenset[tuple[str, ...]], here: tuple[str, ...]) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return here in paths
    if isinstance(value, dict):
        return any(_has_int_at(v, paths, (*here, k)) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_int_at(v, paths, (*here, "[]")) for v in value)
    return False


def _stringify(value: Any, paths: frozenset[tuple[str, ...]], here: tuple[str, ...]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if here in paths and value >= 0 else value
    if isinstance(value, dict):
        return {k: _stringify(v, paths, (*here, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v, paths, (*here, "[]")) for v in value]
    return value


def _shape(value: Any) -> str:
    """The keys and JSON types of a body, without its values (a list: the shapes of its items)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_shape(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + "|".join(sorted({_shape(v) for v in value})) + "]"
    return type(value).__name__


def _int_snowflakes(error: Any) -> Iterator[list[Any]]:
    if (
        error.validator == "type"
        and isinstance(error.schema, dict)
        and error.schema.get("format") == "snowflake"
        and isinstance(error.instance, int)
        and not isinstance(error.instance, bool)
        and error.instance >= 0
    ):
        yield list(error.absolute_path)
    for sub in error.context or ():
        yield from _int_snowflakes(sub)


def _get(obj: Any, path: list[Any]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _set(obj: Any, path: list[Any], value: Any) -> None:
    _get(obj, path[:-1])[path[-1]] = value


def _best(error: Any) -> Any:
    """The failure that names the real problem. In Discord's unions (``oneOf`` on ``type``) that is inside the
    branch whose discriminator matched, not the "type must be 4" of every other branch."""
    from jsonschema.exceptions import best_match

    while error.context:
        branches: dict[Any, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0] if sub.schema_path else None, []).append(sub)
        fitting = [errs for errs in branches.values() if not any(_mismatched(e) for e in errs)]
        pool = fitting[0] if len(fitting) == 1 else list(error.context)
        error = max(pool, key=lambda e: len(e.absolute_path)) if len(fitting) == 1 else best_match(pool)
    return error


def _mismatched(error: Any) -> bool:
    """A branch that does not apply: its discriminator (``type``) or the value's JSON type differs."""
    relative = list(error.relative_path)
    if error.validator in ("enum", "const") and relative == ["type"]:
        return True
    return error.validator == "type" and not relative


def _describe(error: Any) -> tuple[list[Any], str, str]:
    """(path, Discord-style code, message) of one schema failure."""
    path = list(error.absolute_path)
    v, limit = error.validator, error.validator_value
    if v == "maxLength" or v == "maxItems":
        return path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
    if v == "minLength" or v == "minItems":
        return path, "BASE_TYPE_MIN_LENGTH", f"Must be {limit} or more in length."
    if v == "maximum":
        return path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {limit}."
    if v == "minimum":
        return path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {limit}."
    if v == "required":
        missing = [k for k in limit if isinstance(error.instance, dict) and k not in error.instance]
        return [*path, *(missing[:1])], "BASE_TYPE_REQUIRED", "This field is required"
    if v in ("enum", "const"):
        return path, "BASE_TYPE_CHOICES", f"Value must be one of {limit!r}."
    if v == "type":
        return path, "BASE_TYPE_" + str(limit).upper().replace("'", ""), f"Must be of type {limit}."
    return path, "SCHEMA_" + str(v).upper(), error.message[:300]


# -- the worker process ------------------------------------------------------------------------------------

_worker: SpecValidator | None = None


def _worker_init() -> None:
    global _worker
    _worker = SpecValidator()


def _worker_check(template: str, method: str, body: Any) -> tuple[dict[str, Any] | None, float]:
    assert _worker is not None
    start = time.process_time()
    verdict = _worker.check(template, method, body)
    return verdict, time.process_time() - start


@functools.cache
def _inline() -> SpecValidator:
    """The fake's own validator, for ``fits`` (one per process, shared by every fake in it)."""
    return SpecValidator()


class ValidatorPool:
    """One worker process shared by every fake in this process (started on first use, stopped at exit)."""

    _lock = threading.Lock()
    _pool: concurrent.futures.ProcessPoolExecutor | None = None

    @classmethod
    def executor(cls) -> concurrent.futures.ProcessPoolExecutor:
        with cls._lock:
            if cls._pool is None:
                cls._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_init,
                )
                atexit.register(cls.shutdown)
            return cls._pool

    @classmethod
    def shutdown(cls) -> None:
        with cls._lock:
            pool, cls._pool = cls._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # (template, method, shape) of the bodies `judge` has also had `check` judge: see `judge`.
    _crosschecked: ClassVar[set[tuple[str, str, str]]] = set()
    worker_checks: ClassVar[int] = 0  # bodies judged in the worker

    @classmethod
    async def judge(cls, template: str, method: str, body: Any) -> tuple[dict[str, Any] | None, float]:
        """Discord's verdict on a body (None: valid) and the CPU seconds spent on it: ``fits`` here, and
        ``check`` in the worker for a body ``fits`` refuses.

        The first body of each shape (its keys and types, whatever the values) that ``fits`` accepts is
        judged by ``check`` too, and ``check``'s verdict is the answer: a kind of body the two disagree on
        is refused and fails its test, the day the bot starts sending it."""
        start = time.thread_time()
        fits = _inline().fits(template, method, body)
        here = time.thread_time() - start
        if fits:
            key = (template, method.lower(), _shape(body))
            if key in cls._crosschecked:
                return None, here
            cls._crosschecked.add(key)
        verdict, seconds = await cls.check(template, method, body)
        return verdict, here + seconds

    @classmethod
    async def check(cls, template: str, method: str, body: Any) -> tuple[dict[str, Any] | None, float]:
        """(verdict, CPU seconds the worker spent judging)."""
        cls.worker_checks += 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(cls.executor(), _worker_check, template, method, body)
        except concurrent.futures.process.BrokenProcessPool:
            cls.shutdown()  # a dead worker: start a fresh one for the next body
            raise

    @classmethod
    async def warm(cls) -> None:
        """Start the worker, load the spec and build both validators' registries (the worker's crawls the
        whole spec: a fraction of a second) now, not during the first requests a test times."""
        callback = ("/interactions/{interaction_id}/{interaction_token}/callback", "post", {"type": 1})
        _inline().fits(*callback)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(cls.executor(), _worker_check, *callback)
