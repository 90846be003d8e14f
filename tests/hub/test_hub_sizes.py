"""bot.hub.sizes: sizes from aspect ratio and tier, and back."""

from __future__ import annotations

import pytest

from bot.hub.sizes import ASPECT_RATIOS, QUALITIES, TIER_PIXELS, TIERS, parse_size, size_for

RATIOS = [a for a in ASPECT_RATIOS if a != "auto"]


def test_documented_constants():
    assert TIERS == ("1K", "2K", "4K")
    assert TIER_PIXELS == {"1K": 1024, "2K": 2048, "4K": 4096}
    assert QUALITIES == ("auto", "low", "medium", "high")
    assert len(ASPECT_RATIOS) == 16 and ASPECT_RATIOS[0] == "auto"
    assert {"21:9", "9:21", "3:1", "1:3", "5:4"} <= set(ASPECT_RATIOS)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("aspect", RATIOS)
def test_every_documented_ratio_and_tier_round_trips(aspect, tier):
    size = size_for(aspect, tier)
    width, height = (int(p) for p in size.split("x"))
    assert max(width, height) == TIER_PIXELS[tier]
    assert width % 16 == 0 and height % 16 == 0
    w, h = (int(p) for p in aspect.split(":"))
    assert (width > height) == (w > h) and (width == height) == (w == h)
    assert parse_size(size) == (aspect, tier)


@pytest.mark.parametrize(
    ("aspect", "tier", "size"),
    [
        ("1:1", "1K", "1024x1024"),
        ("16:9", "1K", "1024x576"),
        ("9:16", "2K", "1152x2048"),
        ("3:2", "2K", "2048x1360"),
        ("21:9", "4K", "4096x1760"),
        ("auto", "1K", "auto"),
        ("auto", "2K", "2048x2048"),
        ("auto", "4K", "4096x4096"),
    ],
)
def test_size_for_examples(aspect, tier, size):
    assert size_for(aspect, tier) == size


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("auto", ("auto", "1K")),
        (" AUTO ", ("auto", "1K")),
        ("1024x1024", ("1:1", "1K")),
        ("1536x1024", ("3:2", "2K")),
        ("1024X1536", ("2:3", "2K")),
        ("512x512", ("1:1", "1K")),
        ("2049x2049", ("1:1", "4K")),
        ("8000x8000", ("1:1", "4K")),
        ("1000x100", ("auto", "1K")),  # 10:1 is no documented ratio
        ("1024x724", ("auto", "1K")),  # 1.41: between 4:3 and 3:2, more than 3 % from both
        ("1024x690", ("3:2", "1K")),  # within 3 % of 3:2
    ],
)
def test_parse_size_examples(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize(
    "size", ["", "big", "1024", "1024x", "x1024", "0x1024", "1024x0", "-5x10", "1.5x2", "axb"]
)
def test_parse_size_rejects_garbage(size):
    with pytest.raises(ValueError):
        parse_size(size)


@pytest.mark.parametrize(
    ("aspect", "tier"), [("1:1", "8K"), ("1:1", "1k"), ("wide", "1K"), ("0:1", "1K"), ("1:2:3", "2K")]
)
def test_size_for_rejects_unknown_input(aspect, tier):
    with pytest.raises(ValueError):
        size_for(aspect, tier)
