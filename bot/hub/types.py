"""Typed, tolerant results of hub calls.

The hub documents few response shapes, so parsing is forgiving: unknown fields are ignored, missing
optional fields are defaulted, unknown generation statuses are kept as they are, and the model list
accepts several field-name variants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.hub.sizes import QUALITIES, TIERS

FAILED_STATUSES: frozenset[str] = frozenset({"failed", "error", "cancelled", "canceled"})
SUCCEEDED_STATUS = "succeeded"


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def _text_or_none(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


class Credits(_Tolerant):
    """A credit balance: `credits` (None if the hub did not say), the owner's `account_type` and the
    next credit expiry, as sent."""

    credits: int | None = None
    account_type: str | None = None
    next_expiration: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"credits": data}
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("balance", "credit", "remaining"):
                if "credits" not in data and alias in data:
                    data["credits"] = data[alias]
            if "account_type" not in data and "accountType" in data:
                data["account_type"] = data["accountType"]
            if "next_expiration" not in data and "nextExpiration" in data:
                data["next_expiration"] = data["nextExpiration"]
            if data.get("credits") is None:
                data.pop("credits", None)
        return data

    @field_validator("account_type", "next_expiration", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _text_or_none(value)


class GeneratedImage(_Tolerant):
    """One stored image of a generation."""

    id: str = ""
    url: str
    created_at: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return "" if value is None else _text_or_none(value)

    @field_validator("created_at", mode="before")
    @classmethod
    def _created(cls, value: Any) -> Any:
        return _text_or_none(value)


class Usage(_Tolerant):
    """Credits charged (`credits`; final once finished, None if the hub did not say) and requested."""

    credits: int | None = None
    credits_requested: int | None = None

    @field_validator("credits", "credits_requested", mode="after")
    @classmethod
    def _not_negative(cls, value: int | None) -> int | None:
        return None if value is not None and value < 0 else value  # a negative charge is not a charge


def _error_text(value: Any) -> Any:
    """A failure reason as text, from a string or an {"message": ..., "code": ...} object."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        found = _first(value, "message", "detail", "code", "type")
        return None if found is None else str(found)
    return str(value)


class Generation(_Tolerant):
    """A generation as returned by a submission or a poll. A failed generation is data, not an error."""

    id: str
    status: str = "unknown"
    model: str | None = None
    aspect_ratio: str | None = None
    quality: str | None = None
    images: list[GeneratedImage] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    balance: Credits | None = None
    poll_url: str | None = None
    created_at: str | None = None
    error: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return _text_or_none(value)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return "unknown" if value is None else _text_or_none(value)

    @field_validator("model", "aspect_ratio", "quality", "poll_url", "created_at", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _text_or_none(value)

    @field_validator("images", mode="before")
    @classmethod
    def _images(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("usage", mode="before")
    @classmethod
    def _usage(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("error", mode="before")
    @classmethod
    def _error(cls, value: Any) -> Any:
        return _error_text(value)

    @field_validator("balance", mode="before")
    @classmethod
    def _balance(cls, value: Any) -> Any:
        return value if isinstance(value, dict | int | float) and not isinstance(value, bool) else None

    @property
    def succeeded(self) -> bool:
        return self.status.lower() == SUCCEEDED_STATUS

    @property
    def failed(self) -> bool:
        return self.status.lower() in FAILED_STATUSES

    @property
    def is_finished(self) -> bool:
        return self.succeeded or self.failed


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


_TIER_LIKE = re.compile(r"^\d+K$", re.IGNORECASE)


def _first(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        if data.get(name) is not None:
            return data[name]
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, dict):
        keys = ("credits", "credits_per_image", "price", "cost", "value", "max", "limit")
        return _as_int(_first(value, *keys))
    return None


def _credit_table(value: Any) -> dict[str, int]:
    """Credits per image by tier, from a dict, a list of {tier, credits} rows, or one flat number."""
    table: dict[str, int] = {}
    if isinstance(value, dict):
        for tier, price in value.items():
            amount = _as_int(price)
            if amount is not None:
                table[str(tier).upper()] = amount
    elif isinstance(value, list):
        for row in value:
            if isinstance(row, dict):
                tier = _first(row, "tier", "quality", "resolution", "size", "name")
                amount = _as_int(row)
                if tier is not None and amount is not None:
                    table[str(tier).upper()] = amount
    else:
        amount = _as_int(value)
        if amount is not None:
            table = dict.fromkeys(TIERS, amount)
    return table


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            if isinstance(item, dict):
                item = _first(item, "id", "value", "name", "ratio")
            if item is not None:
                out.append(str(item))
        return out
    return None


class HubModel(_Tolerant):
    """An image model: what it accepts and what it costs (credits per image by tier)."""

    id: str
    provider: str | None = None
    aspect_ratios: list[str] = Field(default_factory=lambda: ["auto"])
    tiers: list[str] = Field(default_factory=lambda: list(TIERS))
    qualities: list[str] = Field(default_factory=lambda: list(QUALITIES))
    reference_image_limit: int = 0
    credits: dict[str, int] = Field(default_factory=dict)
    default_aspect: str = "auto"
    default_tier: str = "1K"

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"id": data}
        if not isinstance(data, dict):
            return data
        raw = {_snake(str(k)): v for k, v in data.items()}
        out: dict[str, Any] = {}
        out["id"] = _first(raw, "id", "model", "model_id", "name", "slug")
        provider = _first(raw, "provider", "owned_by", "vendor")
        if provider is not None:
            out["provider"] = str(provider)
        aspects = _str_list(_first(raw, "aspect_ratios", "supported_aspect_ratios", "ratios", "aspects"))
        if aspects:
            out["aspect_ratios"] = aspects
        tiers = _str_list(_first(raw, "tiers", "supported_tiers", "resolutions", "supported_resolutions"))
        qualities = _str_list(_first(raw, "qualities", "supported_qualities", "quality"))
        if qualities and all(_TIER_LIKE.match(q) for q in qualities):
            # The hub's docs call the resolution tiers "qualities".
            tiers = tiers or [q.upper() for q in qualities]
            qualities = None
        credits = _credit_table(_first(raw, "credits", "credits_per_image", "pricing", "price", "cost"))
        if credits:
            out["credits"] = credits
        if tiers:
            out["tiers"] = tiers
        elif credits:
            out["tiers"] = [t for t in TIERS if t in credits] + [t for t in credits if t not in TIERS]
        if qualities:
            out["qualities"] = qualities
        limit = _as_int(
            _first(raw, "reference_image_limit", "max_reference_images", "reference_images", "max_references")
        )
        if limit is not None:
            out["reference_image_limit"] = limit
        defaults = raw.get("defaults")
        defaults = {_snake(str(k)): v for k, v in defaults.items()} if isinstance(defaults, dict) else {}
        aspect = _first(raw, "default_aspect", "default_aspect_ratio") or _first(
            defaults, "aspect", "aspect_ratio"
        )
        if aspect is not None:
            out["default_aspect"] = str(aspect)
        tier = _first(raw, "default_tier", "default_quality", "default_resolution") or _first(
            defaults, "tier", "quality", "resolution"
        )
        if tier is not None:
            out["default_tier"] = str(tier)
        return out

    def cost(self, tier: str, n: int = 1) -> int:
        """Credits charged for `n` images at `tier`; `ValueError` for a tier the model has no price for."""
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        try:
            return self.credits[tier] * n
        except KeyError:
            raise ValueError(f"model {self.id} has no price for tier {tier!r}") from None


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference image to attach to a generation (sent as one `reference_image` part)."""

    data: bytes
    filename: str = "reference.png"
    content_type: str = "image/png"

    def __repr__(self) -> str:
        return (
            f"Reference(filename={self.filename!r}, content_type={self.content_type!r}, "
            f"{len(self.data)} bytes)"
        )
