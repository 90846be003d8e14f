"""The emulator itself: credit accounting, timeline, images, test hooks over HTTP and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.hub import GenerationFailed
from bot.hub.emulator import EmulatorState, create_app, hash_key, render_png

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- credits


@pytest.mark.parametrize(
    ("size", "n", "cost"), [("auto", 1, 8), ("1024x1024", 4, 32), ("2048x1152", 3, 30), ("4096x4096", 2, 24)]
)
async def test_charge_up_front_per_tier_and_n(state, hub, key, size, n, cost):
    state.set_hold(True)
    gen = await hub.generate(model="gpt-image-2", prompt="p", size=size, n=n)
    assert gen.usage.credits_requested == cost
    assert state.balance(key) == 1000 - cost
    state.complete(gen.id)
    assert (await hub.get_generation(gen.id)).usage.credits == cost
    assert state.balance(key) == 1000 - cost


async def test_refund_on_failure(state, hub, key):
    state.fail_next(1)
    gen = await hub.generate(model="gpt-image-2", prompt="p", size="2048x2048", n=4)
    done = await state.wait_finished(gen.id)
    assert done.status == "failed" and done.credits_charged == 0
    assert state.balance(key) == 1000
    polled = await hub.get_generation(gen.id)
    assert polled.failed and polled.usage.credits == 0 and polled.usage.credits_requested == 40


async def test_partial_refund_on_fewer_images(state, hub, key):
    state.fewer_images_next(1, deliver=1)
    gen = await hub.generate(model="gpt-image-2", prompt="p", size="2048x2048", n=3, async_=False)
    assert gen.succeeded and len(gen.images) == 1
    assert gen.usage.credits == 10 and gen.usage.credits_requested == 30
    assert gen.balance is not None and gen.balance.credits == state.balance(key) == 990
    # the fault applied once only
    again = await hub.generate(model="gpt-image-2", prompt="p", n=2, async_=False)
    assert len(again.images) == 2 and state.balance(key) == 990 - 16


async def test_complete_with_fewer_images_refunds_the_difference(state, hub, key):
    state.set_hold(True)
    gen = await hub.generate(model="gpt-image-2", prompt="p", n=4)
    state.complete(gen.id, images=3)
    assert state.balance(key) == 1000 - 24
    with pytest.raises(ValueError):
        state.complete(gen.id)


async def test_keys_of_one_user_share_the_balance(state, hub, key, emulator, client_for):
    colleague = state.add_key(user=state.user_of(key), credits=5)  # joins the account; credits ignored
    await hub.generate(model="gpt-image-2", prompt="p")
    async with client_for(emulator, colleague) as other:
        assert (await other.get_credits()).credits == 992


async def test_keys_are_stored_hashed(state, key):
    assert key not in state.keys and hash_key(key) in state.keys
    assert key.startswith("gih_live_") and len(key) == len("gih_live_") + 32
    assert state.keys[hash_key(key)].suffix == key[-4:]


# ---------------------------------------------------------------------- timeline


async def test_timeline_with_a_delay(serve_app, client_for):
    state = EmulatorState(delay=0.6)  # running after 0.2 s, finished after 0.6 s
    key = state.add_key()
    async with serve_app(create_app(state)) as url, client_for(url, key) as hub:
        gen = await hub.generate(model="gpt-image-2", prompt="p")
        assert gen.status == "queued"
        assert (await hub.get_generation(gen.id)).status == "queued"
        await state.wait_status(gen.id, "running")
        assert (await hub.get_generation(gen.id)).status == "running"
        await state.wait_finished(gen.id)
        done = await hub.get_generation(gen.id)
        assert done.succeeded and len(done.images) == 1
        assert state.polls(gen.id) == 3


async def test_wait_polls_and_wait_generation_created(state, hub):
    state.set_hold(True)

    async def poll_until_done():
        gen = await hub.generate(model="gpt-image-2", prompt="p")
        while True:
            seen = await hub.get_generation(gen.id)
            if seen.is_finished:
                return seen.status
            await asyncio.sleep(0.01)

    task = asyncio.create_task(poll_until_done())
    created = await state.wait_generation_created()
    assert await state.wait_polls(created.id, 3) >= 3
    state.complete(created.id)
    assert await task == "succeeded"
    with pytest.raises(TimeoutError):
        await state.wait_generation_created(2, within=0.05)


async def test_duration_per_generation_and_observers(serve_app, client_for):
    """Harness hooks: each generation takes `duration(gen)` seconds; observers see it created, polled and
    finished (what the benchmarks time, without touching the emulator's internals)."""
    state = EmulatorState(duration=lambda gen: 0.3 if gen.n == 1 else 0.9)
    seen: list[tuple[str, str, float]] = []
    loop = asyncio.get_running_loop()
    state.observers.append(lambda event, gen: seen.append((event, gen.id, loop.time())))
    key = state.add_key()
    async with serve_app(create_app(state)) as url, client_for(url, key) as hub:
        short = await hub.generate(model="gpt-image-2", prompt="p", n=1)
        long = await hub.generate(model="gpt-image-2", prompt="p", n=2)
        await hub.get_generation(short.id)
        await state.wait_finished(long.id)
    times = {(event, gen_id): at for event, gen_id, at in seen}
    assert [(e, g) for e, g, _ in seen if e == "finished"] == [("finished", short.id), ("finished", long.id)]
    assert 0.29 <= times["finished", short.id] - times["created", short.id] < 0.9
    assert times["finished", long.id] - times["created", long.id] >= 0.89
    assert [g for e, g, _ in seen if e == "polled"] == [short.id] and state.polls(short.id) == 1


async def test_gate_holds_generations_running_until_it_opens(serve_app, client_for):
    """A gate keeps generations `running` until it is set; each then finishes `after_gate(gen)` s later."""
    gate = asyncio.Event()
    state = EmulatorState(duration=lambda gen: 0.03, gate=gate, after_gate=lambda gen: 0.3 * (gen.n - 1))
    finished: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    state.observers.append(
        lambda event, gen: finished.setdefault(gen.id, loop.time()) if event == "finished" else None
    )
    key = state.add_key()
    async with serve_app(create_app(state)) as url, client_for(url, key) as hub:
        now = await hub.generate(model="gpt-image-2", prompt="p", n=1)
        later = await hub.generate(model="gpt-image-2", prompt="p", n=2)
        await state.wait_status(later.id, "running")
        with pytest.raises(TimeoutError):
            await state.wait_finished(now.id, within=0.2)
        opened = loop.time()
        gate.set()
        await state.wait_finished(later.id)
        assert state.generations[now.id].finished
    assert finished[now.id] - opened < 0.25
    assert finished[later.id] - opened >= 0.29


async def test_slow_delays_every_response(state, hub):
    import time

    state.slow(0.25)
    started = time.monotonic()
    await hub.list_models()
    assert time.monotonic() - started >= 0.25
    state.slow(0)
    started = time.monotonic()
    await hub.list_models()
    assert time.monotonic() - started < 0.25


# ---------------------------------------------------------------------- images


def test_images_are_deterministic_per_id():
    a1, a2, b = render_png("clx_a", 64, 36), render_png("clx_a", 64, 36), render_png("clx_b", 64, 36)
    assert a1 == a2 and a1 != b
    assert a1.startswith(b"\x89PNG\r\n\x1a\n")


async def test_image_size_follows_state_option_and_aspect(serve_app, client_for):
    state = EmulatorState(image_px=32)
    key = state.add_key()
    async with serve_app(create_app(state)) as url, client_for(url, key) as hub:
        gen = await hub.generate(model="gpt-image-2", prompt="p", size="1024x2048", async_=False)
    record = state.images[gen.images[0].id]
    assert (record.width, record.height) == (16, 32)


# ---------------------------------------------------------------------- HTTP admin endpoints


async def test_admin_endpoints_drive_the_emulator(state, emulator, client_for):
    async with aiohttp.ClientSession() as http:

        async def admin(action: str, **body):
            async with http.post(f"{emulator}/_emulator/{action}", json=body) as resp:
                return resp.status, await resp.json()

        status, added = await admin("add_key", credits=50)
        assert status == 200
        key = added["result"]
        assert state.balance(key) == 50
        assert (await admin("balance", key=key))[1]["result"] == 50
        assert (await admin("hold", enabled=True))[0] == 200
        async with client_for(emulator, key) as hub:
            gen = await hub.generate(model="gpt-image-2", prompt="p")
            assert (await admin("set_status", generation_id=gen.id, status="weird"))[0] == 200
            assert (await hub.get_generation(gen.id)).status == "weird"
            assert (await admin("complete", generation_id=gen.id, images=1))[0] == 200
            assert (await hub.get_generation(gen.id)).succeeded
            await admin("http_error_next", n=1, status=503, paths=["/api/v1/credits"])
            assert (await hub.get_credits()).credits == 42
            await admin("fail_next", n=1)
            await admin("hold", enabled=False)
            with pytest.raises(GenerationFailed):
                await hub.generate(model="gpt-image-2", prompt="p", async_=False)
        assert state.balance(key) == 42


async def test_admin_fail_next_and_listing(state, emulator, key, client_for):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emulator}/_emulator/fail_next", json={"n": 1}) as resp:
            assert resp.status == 200
        async with client_for(emulator, key) as hub:
            gen = await hub.generate(model="gpt-image-2", prompt="p")
            await state.wait_finished(gen.id)
            assert (await hub.get_generation(gen.id)).failed
        async with http.get(f"{emulator}/_emulator/generations") as resp:
            [listed] = await resp.json()
        assert listed["id"] == gen.id and listed["status"] == "failed" and listed["credits_charged"] == 0
        async with http.get(f"{emulator}/_emulator/requests") as resp:
            seen = await resp.json()
        assert [(r["method"], r["path"]) for r in seen] == [
            ("POST", "/api/v1/images/generations"),
            ("GET", f"/api/v1/generations/{gen.id}"),
        ]
        assert seen[0]["key_suffix"] == key[-4:] and key not in json.dumps(seen)
        async with http.post(f"{emulator}/_emulator/no_such_hook", json={}) as resp:
            assert resp.status == 404
        async with http.post(f"{emulator}/_emulator/fail_next", json={"bogus": 1}) as resp:
            assert resp.status == 400


async def test_faults_do_not_touch_admin_endpoints(state, emulator):
    state.http_error_next(5, status=500)
    async with aiohttp.ClientSession() as http, http.get(f"{emulator}/_emulator/generations") as resp:
        assert resp.status == 200
    assert state.requests == []


# ---------------------------------------------------------------------- the CLI


async def _start_cli(*args: str) -> tuple[asyncio.subprocess.Process, list[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.hub.emulator",
        "--port",
        "0",
        "--delay",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=str(ROOT),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(15):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"emulator exited early: {lines}")
            lines.append(line.strip())
            if "listening on " in line:
                return proc, lines, line.split("listening on ", 1)[1].strip()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    async with asyncio.timeout(10):
        await proc.wait()


async def test_cli_serves_the_models_and_given_keys(tmp_path):
    keys_file = tmp_path / "keys.json"
    file_key = "gih_live_" + "F" * 32
    keys_file.write_text(json.dumps({file_key: 77}))
    cli_key = "gih_live_" + "C" * 32
    proc, lines, url = await _start_cli("--key", f"{cli_key}:50", "--keys-file", str(keys_file))
    try:
        assert not any("demo key" in line for line in lines)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/v1/models") as resp:
                body = await resp.json()
            assert [m["id"] for m in body["data"]] == ["gpt-image-2"]
            for key, credits in ((cli_key, 50), (file_key, 77)):
                async with http.get(
                    f"{url}/api/v1/credits", headers={"Authorization": f"Bearer {key}"}
                ) as resp:
                    assert (await resp.json())["credits"] == credits
    finally:
        await _stop(proc)
    assert proc.returncode == 0


async def test_cli_without_keys_prints_a_demo_key(client_for):
    proc, lines, url = await _start_cli()
    try:
        [demo_line] = [line for line in lines if "demo key" in line]
        demo = demo_line.rsplit(" ", 1)[1]
        async with client_for(url, demo) as hub:
            assert (await hub.get_credits()).credits == 1000
            gen = await hub.generate(model="gpt-image-2", prompt="p", async_=False)
            assert gen.succeeded and len(await hub.download(gen.images[0].url, 1_000_000)) > 0
    finally:
        await _stop(proc)
