"""`python -m bot` as a child process logged into the fake Discord: for tests that kill and restart it or run
two of them on one database, for the by-hand demo, and for the benchmarks (CPU, memory, `/metrics`,
profiles).

The child runs the working tree's code (the repo root leads PYTHONPATH) with the fake's `sitecustomize`
patching discord.py. Its settings are exactly the ones given: `DISCORD_*`, `HUB_*` and `DATABASE_*` from
this process's environment are dropped, so a developer's shell cannot change what a test or a benchmark
runs. It logs stdout and stderr to one file, which a failure shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

from tests.fakediscord.server import FakeDiscord

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_python(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python <args>` in a fresh interpreter running the working tree's code (the repo alone on
    PYTHONPATH, no DATABASE_URL inherited; `env` added), its output captured as text."""
    full = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PYTHONPATH"}}
    full.update({"PYTHONPATH": str(REPO_ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=60
    )


#: prefixes of the parent's environment variables the child does not inherit
NOT_INHERITED = ("DISCORD_", "HUB_", "DATABASE_")


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) and the thread count of a process."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BotProcess:
    """One bot child process; `start()` again after `kill()` or `stop()` for a restart.

    `settings`: the bot's environment settings (`DISCORD_TOKEN`, `DATABASE_URL`…; with `METRICS_PORT`,
    `metrics()` reads it). `fast_identify`: skip discord.py's 5 s wait before a non-first IDENTIFY.
    `profile`: run it under `py-spy record` (speedscope output beside the log). `pythonpath`: entries put
    before everything else on the child's PYTHONPATH (diagnosis, e.g. a `sitecustomize` tweak).
    """

    def __init__(
        self,
        fake: FakeDiscord,
        settings: Mapping[str, str],
        log_path: Path,
        *,
        cwd: Path = REPO_ROOT,
        fast_identify: bool = True,
        profile: str | None = None,
        pythonpath: Sequence[str] = (),
    ) -> None:
        self.fake = fake
        self.settings = dict(settings)
        self.log_path = log_path
        self.cwd = cwd
        self.fast_identify = fast_identify
        self.profile = profile
        self.pythonpath = list(pythonpath)
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0  # time.time() at the last spawn

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def metrics_port(self) -> int | None:
        port = self.settings.get("METRICS_PORT")
        return int(port) if port else None

    def environment(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
        env = self.fake.subprocess_env(base, fast_identify=self.fast_identify)
        env["PYTHONPATH"] = os.pathsep.join([*self.pythonpath, str(REPO_ROOT), env["PYTHONPATH"]])
        env.update(self.settings)
        return env

    async def start(self, *, shards: int | None = 1, synced: bool = False, timeout: float = 20.0) -> None:
        """Spawn the child; wait until `shards` shards are ready (None: don't wait) and, with `synced`, until
        it synced its commands."""
        since = self.fake.identify_count
        syncs = len(self.fake.command_syncs)
        argv = [sys.executable, "-m", "bot"]
        if self.profile:
            out = self.log_path.with_suffix(".speedscope.json")
            py_spy = str(Path(sys.executable).with_name("py-spy"))
            # "gil": only the thread holding the GIL (CPU); "idle": idle samples too (sample n: n/200 s)
            mode = {"gil": ["--gil"], "idle": ["--idle"]}.get(self.profile, [])
            argv = [py_spy, "record", "-r", "200", *mode, "-f", "speedscope", "-o", str(out), "--", *argv]
        self.started_at = time.time()
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *argv, env=self.environment(), cwd=self.cwd, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        if shards is None:
            return
        try:
            await self.fake.wait_ready(shard_count=shards, since=since, timeout=timeout)
            if synced:
                await self.fake.wait_for(lambda: len(self.fake.command_syncs) > syncs, timeout, what="sync")
        except TimeoutError:
            raise AssertionError(f"bot process did not log in:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def log_errors(self) -> list[str]:
        """ERROR / Traceback lines from the bot's log."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback")]

    def check_alive(self) -> None:
        if self.process is None or self.process.returncode is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"the bot process exited ({self.process and self.process.returncode}):\n{tail}"
            )

    async def metrics(self) -> str:
        """The child's `/metrics` text (needs `METRICS_PORT` in the settings)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as response,
        ):
            return await response.text()

    def cpu(self) -> float:
        return cpu_seconds(self._bot_pid())

    def bot_status(self) -> dict[str, int]:
        """/proc status of the bot itself (not py-spy's wrapper when profiling)."""
        return proc_status(self._bot_pid())

    async def kill(self) -> None:
        """SIGKILL: no clean shutdown, exactly like a crash."""
        if self.process is not None and self.process.returncode is None:
            os.kill(self._bot_pid(), signal.SIGKILL)
            await self.process.wait()

    async def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait for the clean shutdown (SIGKILL after `timeout` seconds)."""
        if self.process is None or self.process.returncode is not None:
            return
        # py-spy forwards nothing: signal the bot itself (py-spy's child) when profiling.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._bot_pid(), signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def _bot_pid(self) -> int:
        if not self.profile:
            return self.pid
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            if children:
                return int(children[0])
        return self.pid
