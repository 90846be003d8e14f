"""Aspect ratios, resolution tiers and the hub's OpenAI-style `size` strings.

The hub prices a generation by resolution tier (1K/2K/4K, the long side in pixels) and reports the
aspect ratio and tier it derived from the requested `size`. `size_for` builds a size from an aspect
ratio and tier; `parse_size` goes back. Every documented ratio and tier round-trips.
"""

from __future__ import annotations

import math

TIERS: tuple[str, ...] = ("1K", "2K", "4K")
TIER_PIXELS: dict[str, int] = {"1K": 1024, "2K": 2048, "4K": 4096}
ASPECT_RATIOS: tuple[str, ...] = (
    "auto",
    "1:1",
    "4:3",
    "3:4",
    "3:2",
    "2:3",
    "16:9",
    "9:16",
    "5:4",
    "4:5",
    "21:9",
    "9:21",
    "2:1",
    "1:2",
    "3:1",
    "1:3",
)
QUALITIES: tuple[str, ...] = ("auto", "low", "medium", "high")

_MATCH_TOLERANCE = 0.03
_STEP = 16


def _ratio(aspect: str) -> tuple[int, int]:
    parts = aspect.split(":")
    if len(parts) != 2:
        raise ValueError(f"aspect ratio must look like 16:9, not {aspect!r}")
    try:
        w, h = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"aspect ratio must look like 16:9, not {aspect!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"aspect ratio parts must be positive: {aspect!r}")
    return w, h


def _tier_pixels(tier: str) -> int:
    try:
        return TIER_PIXELS[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}") from None


def size_for(aspect: str, tier: str) -> str:
    """The `WxH` (or `auto`) size for an aspect ratio such as `16:9` at a tier such as `2K`.

    The long side is the tier's pixels; the short side is scaled by the ratio and rounded to a
    multiple of 16. `auto` at 1K stays `auto`; `auto` at a larger tier asks for that tier's square.
    """
    long_side = _tier_pixels(tier)
    if aspect == "auto":
        return "auto" if tier == "1K" else f"{long_side}x{long_side}"
    w, h = _ratio(aspect)
    short_side = max(_STEP, round(long_side * min(w, h) / max(w, h) / _STEP) * _STEP)
    return f"{long_side}x{short_side}" if w > h else f"{short_side}x{long_side}"


def _tier_for(long_side: int) -> str:
    for tier in TIERS:
        if long_side <= TIER_PIXELS[tier]:
            return tier
    return TIERS[-1]


def parse_size(size: str) -> tuple[str, str]:
    """The `(aspect, tier)` of a size: `auto` → `("auto", "1K")`, `1536x1024` → `("3:2", "2K")`.

    The tier comes from the long side (≤1024 → 1K, ≤2048 → 2K, else 4K); the aspect is the nearest
    documented ratio within 3 %, else `auto`. Raises `ValueError` for anything not `auto` or `WxH`.
    """
    text = size.strip().lower()
    if text == "auto":
        return "auto", "1K"
    parts = text.split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"size must be 'auto' or 'WIDTHxHEIGHT', not {size!r}")
    width, height = int(parts[0]), int(parts[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"size sides must be positive: {size!r}")
    tier = _tier_for(max(width, height))
    actual = math.log(width / height)
    best, best_distance = "auto", math.inf
    for aspect in ASPECT_RATIOS[1:]:
        w, h = _ratio(aspect)
        distance = abs(actual - math.log(w / h))
        if distance < best_distance:
            best, best_distance = aspect, distance
    if best_distance > math.log1p(_MATCH_TOLERANCE):
        best = "auto"
    return best, tier
