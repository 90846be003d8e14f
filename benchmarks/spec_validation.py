"""What holding bodies to Discord's OpenAPI spec costs: the compiled check, jsonschema inline, the worker.

The fake Discord shares its event loop with the in-process bot of the tests, and every benchmark's bot
shares the machine's cores with it, so time spent validating is time the bot's callbacks wait. This
measures, for bodies the bot really sends (a mix of a callback with an embed, a deferral, a status edit
with a file and a channel post; each kind and a command sync of 8 commands alone too):

- fits (what the fake does for a valid body of a shape it has judged before): the event loop's CPU time
  per body for `SpecValidator.fits` (jsonschema-rs);
- inline: the event loop's own CPU time per body if `SpecValidator.check` (jsonschema) ran in it;
- worker (what the fake does for a body `fits` refuses, and for the first body of each shape): the event
  loop's CPU time per body to hand it to the worker process and take the verdict back, the CPU the
  executor's helper threads spend (pickling, which holds the GIL), the worker's CPU per body, and the wall
  time a request waits for its verdict.

    .venv/bin/python -m benchmarks.spec_validation [--bodies 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from tests.fakediscord.openapi import SpecValidator, ValidatorPool

EMBED = {
    "description": "a lighthouse at dusk, " * 20,
    "color": 5793266,
    "fields": [{"name": "Cost", "value": "8 credits", "inline": True}] * 4,
    "footer": {"text": "job #1234"},
}
BUTTONS = {
    "type": 1,
    "components": [
        {"type": 2, "style": 1, "label": "Reroll", "custom_id": "imagine:reroll:1234"},
        {"type": 2, "style": 2, "label": "Use as reference", "custom_id": "imagine:reference:1234"},
        {"type": 2, "style": 4, "label": "Delete", "custom_id": "imagine:delete:1234"},
    ],
}
CALLBACK = "/interactions/{interaction_id}/{interaction_token}/callback"
BODIES: list[tuple[str, str, Any]] = [
    (CALLBACK, "post", {"type": 4, "data": {"embeds": [EMBED], "allowed_mentions": {"parse": []}}}),
    (CALLBACK, "post", {"type": 5, "data": {"flags": 0}}),
    (
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
        "patch",
        {"embeds": [EMBED], "components": [BUTTONS], "attachments": [{"id": 0, "filename": "image-1.png"}]},
    ),
    (
        "/channels/{channel_id}/messages",
        "post",
        {
            "embeds": [EMBED],
            "components": [BUTTONS],
            "nonce": "job-1234",
            "enforce_nonce": True,
            "message_reference": {"message_id": 1576818713338839040, "fail_if_not_exists": False},
            "attachments": [{"id": i, "filename": f"image-{i}.png"} for i in range(4)],
            "allowed_mentions": {"parse": []},
        },
    ),
]


def _commands() -> list[dict[str, Any]]:
    option = {"type": 3, "name": "prompt", "description": "What to draw", "required": True}
    return [
        {"name": f"cmd{i}", "description": "A command", "type": 1, "options": [option], "contexts": [0]}
        for i in range(8)
    ]


def _per_body(total: float, n: int) -> str:
    return f"{total / n * 1e6:.0f} µs"


async def measure(n: int) -> dict[str, Any]:
    bodies = list(BODIES)
    work = [bodies[i % len(bodies)] for i in range(n)]

    inline = SpecValidator()
    for template, method, body in bodies:  # compile every validator first, as the worker does
        assert inline.check(template, method, json.loads(json.dumps(body))) is None, template
    thread0, wall0 = time.thread_time(), time.perf_counter()
    for template, method, body in work:
        inline.check(template, method, body)
    inline_loop = time.thread_time() - thread0
    inline_wall = time.perf_counter() - wall0
    for template, method, body in bodies:
        assert inline.fits(template, method, body), template
    thread0 = time.thread_time()
    for template, method, body in work:
        inline.fits(template, method, body)
    fits_loop = time.thread_time() - thread0
    kinds = {}
    names = ["callback (embed)", "callback (deferral)", "status edit (file)", "channel post (files)"]
    for name, (template, method, body) in zip(
        [*names, "command sync (8 commands)"],
        [*bodies, ("/applications/{application_id}/commands", "put", _commands())],
        strict=True,
    ):
        start = time.thread_time()
        for _ in range(50):
            inline.check(template, method, body)
        kinds[f"inline: {name}, {method.upper()} {template}"] = _per_body(time.thread_time() - start, 50)
        start = time.thread_time()
        for _ in range(50):
            inline.fits(template, method, body)
        kinds[f"fits: {name}"] = _per_body(time.thread_time() - start, 50)

    await ValidatorPool.warm()
    for template, method, body in bodies:
        await ValidatorPool.check(template, method, body)
    waits: list[float] = []
    worker_cpu = 0.0
    thread0, process0 = time.thread_time(), time.process_time()
    for template, method, body in work:
        start = time.perf_counter()
        verdict, seconds = await ValidatorPool.check(template, method, body)
        waits.append(time.perf_counter() - start)
        worker_cpu += seconds
        assert verdict is None
    loop_cpu = time.thread_time() - thread0
    helper_cpu = (time.process_time() - process0) - loop_cpu
    ValidatorPool.shutdown()
    waits.sort()
    return {
        "bodies": n,
        "fits: event-loop CPU per body": _per_body(fits_loop, n),
        "inline: event-loop CPU per body": _per_body(inline_loop, n),
        "inline: wall per body": _per_body(inline_wall, n),
        "worker: event-loop CPU per body": _per_body(loop_cpu, n),
        "worker: executor helper threads CPU per body (GIL)": _per_body(helper_cpu, n),
        "worker: validation CPU per body (other process)": _per_body(worker_cpu, n),
        "worker: verdict wait p50 / p99": (
            f"{statistics.median(waits) * 1e3:.2f} / {waits[int(len(waits) * 0.99)] * 1e3:.2f} ms"
        ),
        **kinds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bodies", type=int, default=2000)
    args = parser.parse_args()
    for key, value in asyncio.run(measure(args.bodies)).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
