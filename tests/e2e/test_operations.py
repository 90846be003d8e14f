"""The running bot process serves /healthz and /metrics on METRICS_PORT."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
from cryptography.fernet import Fernet

from bot.hub.emulator import EmulatorState
from tests.bed import BotProcess, hub_settings
from tests.fakediscord.server import FakeDiscord


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_health_and_metrics_of_the_running_bot(
    fake_discord: FakeDiscord, hub: tuple[str, EmulatorState], bed_database_url: str, tmp_path: Path
) -> None:
    hub_url, _ = hub
    port = free_port()
    settings = {
        "DISCORD_TOKEN": fake_discord.token,
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DATABASE_URL": bed_database_url,
        **hub_settings(hub_url),
        "METRICS_PORT": str(port),
    }
    bot = BotProcess(fake_discord, settings, tmp_path / "bot.log")
    await bot.start()
    try:
        d = fake_discord.default
        await (await fake_discord.slash(d.guild, d.general, d.alice, "models")).callback()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                body = await response.json()
                assert response.status == 200, body
                assert body["checks"] == {"gateway": True, "database": True, "scheduler": True}
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
        assert response.status == 200
        assert "imagehub_commands_total" in text and "imagehub_queue_depth" in text
    finally:
        await bot.stop()
    assert "Traceback" not in bot.log(), bot.log()
