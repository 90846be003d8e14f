"""Reference-image checks: by their bytes, not by what the uploader declared.

All checks run before anything is reserved or sent, so a bad attachment costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REFERENCE_BYTES = 50 * 1024 * 1024
ALLOWED_TYPES = ("image/png", "image/jpeg", "image/webp")


class BadReference(ValueError):
    """A reference image is unusable; the message is fit for the member."""


@dataclass(frozen=True, slots=True)
class CheckedReference:
    data: bytes
    filename: str
    content_type: str


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


def check_declared_size(filename: str, size: int) -> None:
    """Refuse by the declared size, before downloading anything."""
    if size > MAX_REFERENCE_BYTES:
        raise BadReference(f"`{filename}` is {size / 1024 / 1024:.0f} MB; references can be at most 50 MB.")
    if size == 0:
        raise BadReference(f"`{filename}` is empty.")


def check_reference(filename: str, data: bytes) -> CheckedReference:
    """Check downloaded bytes; the content type comes from the bytes themselves."""
    if not data:
        raise BadReference(f"`{filename}` is empty.")
    if len(data) > MAX_REFERENCE_BYTES:
        raise BadReference(f"`{filename}` is larger than 50 MB.")
    kind = sniff_image_type(data)
    if kind is None:
        raise BadReference(f"`{filename}` is not a PNG, JPEG or WebP image.")
    if not looks_complete(data, kind):
        raise BadReference(f"`{filename}` looks truncated or damaged.")
    return CheckedReference(data=data, filename=filename, content_type=kind)
