"""`python -m bot.hub.emulator`: serve the emulated hub.

    python -m bot.hub.emulator --port 8080 [--host 127.0.0.1] [--key gih_live_...:CREDITS ...]
                               [--keys-file keys.json] [--delay SECONDS] [--account-type PRO]

Without --key/--keys-file one demo key with 1000 credits is created and printed. The keys file is a
JSON object {"gih_live_...": credits} or a list of {"key": ..., "credits": ..., "account_type": ...}.
Once listening it prints `hub emulator listening on http://HOST:PORT` (with --port 0 the real port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.hub.emulator.app import create_app
from bot.hub.emulator.state import EmulatorState

DEMO_CREDITS = 1000


def _parse_key(text: str) -> tuple[str, int | None]:
    key, sep, credits = text.rpartition(":")
    if not sep:
        return text, None
    try:
        return key, int(credits)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KEY:CREDITS, got {text!r}") from None


def _keys_from_file(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        return [{"key": k, "credits": int(v)} for k, v in data.items()]
    if isinstance(data, list):
        return [dict(item) for item in data]
    raise ValueError("the keys file must be a JSON object or list")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot.hub.emulator", description="GPT Image Hub emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--key", action="append", default=[], type=_parse_key, metavar="KEY:CREDITS")
    parser.add_argument("--keys-file", type=Path)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds a generation takes")
    parser.add_argument("--account-type", default="PRO")
    parser.add_argument("--image-px", type=int, default=64, help="long side of generated images")
    return parser


async def serve(args: argparse.Namespace) -> None:
    state = EmulatorState(delay=args.delay, image_px=args.image_px, account_type=args.account_type)
    for key, credits in args.key:
        state.add_key(key, DEMO_CREDITS if credits is None else credits)
    if args.keys_file is not None:
        for entry in _keys_from_file(args.keys_file):
            state.add_key(
                entry["key"], int(entry.get("credits", DEMO_CREDITS)), account_type=entry.get("account_type")
            )
    if not state.keys:
        demo = state.add_key(credits=DEMO_CREDITS)
        print(f"demo key (1000 credits): {demo}", flush=True)
    runner = web.AppRunner(create_app(state), shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"hub emulator listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(serve(args))
    except (OSError, ValueError) as exc:
        print(f"hub emulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
