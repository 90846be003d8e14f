"""Deterministic PNGs for emulated generations, and image-type sniffing for references."""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from bot.imagetypes import sniff_image_type

__all__ = ["dimensions", "render_png", "sniff_image_type"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def dimensions(aspect: str, long_side: int) -> tuple[int, int]:
    """(width, height) for an aspect ratio such as `16:9` with the given long side (`auto` → square)."""
    try:
        w, h = (int(part) for part in aspect.split(":"))
    except ValueError:
        return long_side, long_side
    if w <= 0 or h <= 0:
        return long_side, long_side
    short = max(1, round(long_side * min(w, h) / max(w, h)))
    return (long_side, short) if w >= h else (short, long_side)


def render_png(image_id: str, width: int, height: int) -> bytes:
    """A small PNG that depends only on `image_id` and the size: same id → same bytes."""
    seed = hashlib.sha256(image_id.encode()).digest()
    image = Image.new("RGB", (width, height), (seed[0], seed[1], seed[2]))
    draw = ImageDraw.Draw(image)
    for i in range(4):
        b = seed[3 + i * 7 : 10 + i * 7]
        x0, y0 = b[0] * width // 256, b[1] * height // 256
        x1, y1 = x0 + 1 + b[2] * width // 512, y0 + 1 + b[3] * height // 512
        draw.rectangle((x0, y0, x1, y1), fill=(b[4], b[5], b[6]))
    info = PngInfo()
    info.add_text("image_id", image_id)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()
