"""Baseline clients the benchmarks compare the bot with (run as subprocesses by lag.py and capacity.py).

`naive`: one asyncio task per job, answering its own interaction (a token handed to it, as the bot
answers each /imagine) and submitting an async generation, then sleeping a fixed 1 s between polls;
when it succeeds, it downloads the images and edits its interaction's answer into the result (files,
one request), under the same Discord rules as the bot: a 429 is waited out (`retry_after`) and
tried again, and counted.

`sync`: one task per job holding a synchronous generation (`async: false`) open until the hub answers,
so one HTTP connection per in-flight generation; samples its own open sockets and memory.

    python -m benchmarks.naive naive --hub URL --key KEY --discord API_BASE --application ID
        # reads "<interaction id> <token>" lines on stdin, one job each, as they come
    python -m benchmarks.naive sync --hub URL --key KEY --jobs N

Prints one JSON line of results on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from benchmarks.common import open_fds
from tests.botprocess import proc_status

TIERS = {"1K": "1024x1024", "2K": "2048x2048", "4K": "4096x4096"}


async def naive(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    auth = {"Authorization": f"Bearer {args.key}"}
    polls = 0
    errors = 0
    refused_429 = 0

    async def discord(
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
    ) -> int:
        """One Discord request, honouring 429s as a client must (wait `retry_after`, try again)."""
        nonlocal refused_429
        while True:
            kw: dict[str, Any] = {"json": body} if form is None else {"data": form()}
            async with session.request(method, url, **kw) as r:
                if r.status != 429:
                    return r.status
                refused_429 += 1
                retry = float((await r.json(content_type=None) or {}).get("retry_after", 1.0))
            await asyncio.sleep(retry)

    async def job(session: aiohttp.ClientSession, i: int, interaction_id: str, token: str) -> None:
        nonlocal polls, errors
        # The first answer through the interaction (as the bot gives it): the result edits it.
        status = await discord(
            session,
            "POST",
            f"{args.discord}/interactions/{interaction_id}/{token}/callback",
            body={"type": 4, "data": {"content": "naive: generating"}},
        )
        if status >= 300:
            errors += 1
            return
        body = {"model": "gpt-image-2", "prompt": f"naive {i}", "size": TIERS[rng.choice(list(TIERS))]}
        async with session.post(
            f"{args.hub}/api/v1/images/generations", json={**body, "async": True}, headers=auth
        ) as r:
            gen = await r.json()
        while True:
            await asyncio.sleep(1.0)
            polls += 1
            async with session.get(f"{args.hub}/api/v1/generations/{gen['id']}", headers=auth) as r:
                gen = await r.json()
            if gen["status"] in ("succeeded", "failed"):
                break
        if gen["status"] != "succeeded":
            errors += 1
            return
        images = []
        for image in gen["images"]:
            async with session.get(image["url"]) as r:
                images.append(await r.read())

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            payload = {
                "content": f"naive generation {gen['id']}",
                "attachments": [{"id": n, "filename": f"image-{n}.png"} for n in range(len(images))],
            }
            data.add_field("payload_json", json.dumps(payload), content_type="application/json")
            for n, blob in enumerate(images):
                data.add_field(f"files[{n}]", blob, filename=f"image-{n}.png", content_type="image/png")
            return data

        status = await discord(
            session,
            "PATCH",
            f"{args.discord}/webhooks/{args.application}/{token}/messages/@original",
            form=form,
        )
        if status >= 300:
            errors += 1

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with aiohttp.ClientSession() as session:
        tasks = []
        # One job per interaction as it arrives ("<id> <token>" lines), until stdin closes.
        while line := (await stdin.readline()).decode().strip():
            interaction_id, token = line.split()
            tasks.append(asyncio.create_task(job(session, len(tasks), interaction_id, token)))
        await asyncio.gather(*tasks)
    return {
        "polls": polls,
        "errors": errors,
        "429": refused_429,
        "hwm_kb": proc_status(os.getpid()).get("VmHWM", 0),
    }


async def sync(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    auth = {"Authorization": f"Bearer {args.key}"}
    idle = proc_status(os.getpid())
    peak_sockets = 0
    errors = 0
    done = 0

    async def sample() -> None:
        nonlocal peak_sockets
        while True:
            peak_sockets = max(peak_sockets, open_fds(os.getpid())[1])
            await asyncio.sleep(0.1)

    async def job(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal errors, done
        body = {
            "model": "gpt-image-2",
            "prompt": f"sync {i}",
            "size": TIERS[rng.choice(list(TIERS))],
            "async": False,
        }
        try:
            async with session.post(f"{args.hub}/api/v1/images/generations", json=body, headers=auth) as r:
                gen = await r.json()
            for image in gen.get("images", []):
                async with session.get(image["url"]) as r:
                    await r.read()
            done += 1
        except (aiohttp.ClientError, TimeoutError):
            errors += 1

    sampler = asyncio.create_task(sample())
    timeout = aiohttp.ClientTimeout(total=900)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        tasks = []
        start = time.monotonic()
        for i in range(args.jobs):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(job(session, i)))
        await asyncio.gather(*tasks)
    sampler.cancel()
    status = proc_status(os.getpid())
    return {
        "done": done,
        "errors": errors,
        "peak_sockets": peak_sockets,
        "idle_rss_kb": idle.get("VmRSS", 0),
        "hwm_kb": status.get("VmHWM", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.naive")
    parser.add_argument("mode", choices=["naive", "sync"])
    parser.add_argument("--hub", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--discord")
    parser.add_argument("--application")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="submissions per second")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(naive(args) if args.mode == "naive" else sync(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
