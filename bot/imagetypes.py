"""Image types by their bytes (magic numbers), never by what a sender declared.

Used wherever untrusted bytes claim to be an image: reference uploads (`bot.references`), the
hub's results before they are posted (`bot.engine.images`), and the hub emulator's checks.
"""

from __future__ import annotations


def sniff_image_type(data: bytes) -> str | None:
    """The image type by magic number: PNG, JPEG or WebP, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def sniff_result_type(data: bytes) -> str | None:
    """The type of a generated image the bot may post: PNG, JPEG, WebP or GIF by magic number,
    else None (an error page, or anything else, is never posted as an image)."""
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return sniff_image_type(data)


def looks_complete(data: bytes, content_type: str) -> bool:
    """Cheap truncation check: a PNG must end with IEND, a JPEG with EOI."""
    if content_type == "image/png":
        return data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    if content_type == "image/jpeg":
        return data.rstrip(b"\x00\r\n").endswith(b"\xff\xd9")
    if content_type == "image/webp":
        return len(data) >= 8 and int.from_bytes(data[4:8], "little") + 8 <= len(data)
    return False
