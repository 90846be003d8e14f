"""Tolerant parsing of hub results (unit level; the HTTP-level shapes are in test_hub_client.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.hub import Credits, Generation, HubModel, Reference


@pytest.mark.parametrize(
    "raw",
    [
        {
            "id": "m",
            "provider": "openai",
            "aspect_ratios": ["auto", "1:1"],
            "tiers": ["1K", "2K"],
            "qualities": ["auto", "high"],
            "credits": {"1K": 8, "2K": 10},
            "reference_image_limit": 4,
            "default_aspect": "1:1",
            "default_tier": "2K",
        },
        {
            "model": "m",
            "owned_by": "openai",
            "supported_aspect_ratios": ["auto", "1:1"],
            "qualities": ["1K", "2K"],  # the docs call resolution tiers "qualities"
            "credits_per_image": {"1K": 8, "2K": 10},
            "max_reference_images": 4,
            "defaults": {"aspect_ratio": "1:1", "quality": "2K"},
        },
        {
            "modelId": "m",
            "provider": "openai",
            "ratios": "auto, 1:1",
            "resolutions": ["1K", "2K"],
            "pricing": [{"tier": "1K", "credits": 8}, {"tier": "2k", "credits": "10"}],
            "referenceImageLimit": {"max": 4},
            "defaultAspectRatio": "1:1",
            "defaultQuality": "2K",
            "something_new": {"nested": True},
        },
    ],
    ids=["canonical", "variants", "camel-case-and-rows"],
)
def test_model_field_name_variants(raw):
    model = HubModel.model_validate(raw)
    assert model.id == "m"
    assert model.provider == "openai"
    assert model.aspect_ratios == ["auto", "1:1"]
    assert model.tiers == ["1K", "2K"]
    assert model.credits == {"1K": 8, "2K": 10}
    assert model.reference_image_limit == 4
    assert model.default_aspect == "1:1"
    assert model.default_tier == "2K"


def test_model_missing_optional_fields_are_defaulted():
    model = HubModel.model_validate({"id": "bare"})
    assert model.provider is None
    assert model.aspect_ratios == ["auto"]
    assert model.tiers == ["1K", "2K", "4K"]
    assert model.qualities == ["auto", "low", "medium", "high"]
    assert model.reference_image_limit == 0
    assert model.credits == {}
    assert (model.default_aspect, model.default_tier) == ("auto", "1K")
    assert HubModel.model_validate("just-an-id").id == "just-an-id"


def test_model_tiers_follow_the_price_table_when_not_listed():
    model = HubModel.model_validate({"id": "m", "credits": {"4K": 3, "1K": 1}})
    assert model.tiers == ["1K", "4K"]
    flat = HubModel.model_validate({"id": "m", "credits": 5})
    assert flat.credits == {"1K": 5, "2K": 5, "4K": 5}


def test_model_without_id_is_rejected():
    with pytest.raises(ValidationError):
        HubModel.model_validate({"provider": "openai"})


def test_cost_is_credits_per_image_times_n():
    model = HubModel.model_validate({"id": "m", "credits": {"1K": 8, "2K": 10, "4K": 12}})
    assert model.cost("1K", 1) == 8
    assert model.cost("2K", 3) == 30
    assert model.cost("4K", 4) == 48
    with pytest.raises(ValueError, match="8K"):
        model.cost("8K", 1)
    with pytest.raises(ValueError):
        model.cost("1K", 0)


@pytest.mark.parametrize(
    ("status", "finished", "succeeded", "failed"),
    [
        ("queued", False, False, False),
        ("running", False, False, False),
        ("succeeded", True, True, False),
        ("failed", True, False, True),
        ("error", True, False, True),
        ("cancelled", True, False, True),
        ("canceled", True, False, True),
        ("moderation_review", False, False, False),
    ],
)
def test_generation_status_properties(status, finished, succeeded, failed):
    gen = Generation.model_validate({"id": "g", "status": status})
    assert gen.status == status  # unknown statuses are kept as they are
    assert (gen.is_finished, gen.succeeded, gen.failed) == (finished, succeeded, failed)


def test_generation_tolerates_missing_null_and_unknown_fields():
    gen = Generation.model_validate(
        {
            "id": "g",
            "images": None,
            "usage": None,
            "balance": "n/a",
            "error": {"code": "x", "message": "boom"},
            "new_field": [1, 2],
        }
    )
    assert gen.status == "unknown" and not gen.is_finished
    assert gen.images == [] and gen.usage.credits is None and gen.balance is None
    assert gen.error == "boom"
    full = Generation.model_validate(
        {
            "id": "g",
            "status": "succeeded",
            "images": [{"url": "https://x/y.png", "extra": 1}],
            "usage": {"credits": 8},
            "balance": {"credits": 112, "account_type": "PRO", "next_expiration": None},
        }
    )
    assert full.images[0].url == "https://x/y.png" and full.images[0].id == ""
    assert full.usage.credits == 8 and full.usage.credits_requested is None
    assert full.balance == Credits(credits=112, account_type="PRO", next_expiration=None)


def test_credits_variants():
    assert Credits.model_validate(
        {"credits": 5, "accountType": "FREE", "nextExpiration": 1700000000}
    ) == Credits(credits=5, account_type="FREE", next_expiration="1700000000")
    assert Credits.model_validate({"balance": 7}).credits == 7
    assert Credits.model_validate({}).credits is None


def test_reference_repr_hides_the_bytes():
    ref = Reference(b"\x89PNG" + b"x" * 5000, "a.png", "image/png")
    assert "5004 bytes" in repr(ref) and "xxxx" not in repr(ref)
