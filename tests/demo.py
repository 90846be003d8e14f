"""A by-hand run: the real bot process against the hub emulator and the fake Discord.

    .venv/bin/python -m tests.demo

Starts the emulator and the fake Discord in this process, `python -m bot` as a child, then
plays a moderator and a member through the main commands, printing what a Discord user would
see: each reply, and the /imagine status message as it moves until the images arrive.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from bot.hub.emulator import EmulatorState, serving
from tests.bed import hub_settings
from tests.botprocess import BotProcess
from tests.fakediscord.interactions import FakeInteraction
from tests.fakediscord.server import FakeDiscord


def show(label: str, payload: Any) -> None:
    embeds = payload.embeds if hasattr(payload, "embeds") else payload
    lines = []
    for embed in embeds:
        for key in ("title", "description"):
            if embed.get(key):
                lines.append(str(embed[key]))
        lines += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
        if embed.get("footer"):
            lines.append(f"({embed['footer']['text']})")
    text = "\n    ".join(line.replace("\n", "\n    ") for line in lines)
    print(f"\n[{time.strftime('%H:%M:%S')}] {label}\n    {text}")


async def reply(it: FakeInteraction) -> Any:
    cb = await it.callback()
    if cb.type in (4, 9):
        return cb
    return await it.original(10)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeDiscord() as fake, serving(EmulatorState(delay=6.0, image_px=256)) as (hub_url, hub):
            d = fake.setup_default()
            key = hub.add_key(credits=500)
            settings = {
                "DISCORD_TOKEN": fake.token,
                "ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/demo.db",
                **hub_settings(hub_url),
            }
            bot = BotProcess(fake, settings, Path(tmp) / "bot.log")
            await bot.start()
            try:
                print("registered commands:", sorted(c["name"] for c in fake.commands()))
                show("/models (alice)", await reply(await fake.slash(d.guild, d.general, d.alice, "models")))
                show(
                    "/imagine before a key (alice)",
                    await reply(
                        await fake.slash(d.guild, d.images, d.alice, "imagine", {"prompt": "a red kite"})
                    ),
                )
                it = await fake.slash(d.guild, d.general, d.admin, ["config", "key", "set"])
                modal = await it.callback()
                print(f"\n/config key set (admin) -> modal {modal.data.get('title')!r}")
                field = modal.text_inputs[0]
                show("key modal submitted", await (await fake.submit_modal(it, {field: key})).original(10))
                show(
                    "/config quota default 100 per day",
                    await reply(
                        await fake.slash(
                            d.guild,
                            d.general,
                            d.admin,
                            ["config", "quota", "default"],
                            {"credits": 100, "period": "day"},
                        )
                    ),
                )
                show(
                    "/credits (admin)", await reply(await fake.slash(d.guild, d.general, d.admin, "credits"))
                )

                it = await fake.slash(
                    d.guild,
                    d.images,
                    d.alice,
                    "imagine",
                    {"prompt": "a lighthouse at dusk, oil painting", "count": 2, "aspect": "16:9"},
                )
                status = await reply(it)
                show("/imagine (alice) -> status message", status)
                seen = 0
                while True:
                    message = await it.original(30, lambda m, n=seen: len(m.edits) > n)
                    seen = len(message.edits)
                    if message.attachments:
                        show(
                            f"status message became the result ({len(message.attachments)} files: "
                            + ", ".join(f"{a.filename} {len(a.data)} B" for a in message.attachments)
                            + ")",
                            message,
                        )
                        print(
                            "    buttons:",
                            [c.get("custom_id") for c in message.walk_components() if c.get("custom_id")],
                        )
                        break
                    show(f"status message edit #{seen}", message)
                show("/quota (alice)", await reply(await fake.slash(d.guild, d.general, d.alice, "quota")))
                print(
                    "\nhub balance:",
                    hub.balance(key),
                    "| polls:",
                    json.dumps({g.id[:10]: hub.polls(g.id) for g in hub.generations.values()}),
                )
            finally:
                await bot.stop()


if __name__ == "__main__":
    asyncio.run(main())
