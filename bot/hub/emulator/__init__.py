"""An emulator of the GPT Image Hub API for development and tests.

Run it with `python -m bot.hub.emulator --port 8080`, or build it in-process with `create_app()` and
drive it through the `EmulatorState` at `app[STATE]`.
"""

from bot.hub.emulator.app import ADMIN_ACTIONS, STATE, create_app, generation_json, serving
from bot.hub.emulator.images import render_png, sniff_image_type
from bot.hub.emulator.state import (
    EmulatorState,
    GenerationEvent,
    GenerationRecord,
    ImageRecord,
    ModelSpec,
    ReceivedReference,
    RequestRecord,
    gpt_image_2,
    hash_key,
    new_key,
)

__all__ = [
    "ADMIN_ACTIONS",
    "STATE",
    "EmulatorState",
    "GenerationEvent",
    "GenerationRecord",
    "ImageRecord",
    "ModelSpec",
    "ReceivedReference",
    "RequestRecord",
    "create_app",
    "generation_json",
    "gpt_image_2",
    "hash_key",
    "new_key",
    "render_png",
    "serving",
    "sniff_image_type",
]
