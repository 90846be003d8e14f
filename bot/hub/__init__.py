"""GPT Image Hub client: `HubClient`, typed results, errors, sizes and costs."""

from bot.hub.client import HubClient, mask_key
from bot.hub.errors import (
    DownloadError,
    DownloadTooLarge,
    ExpiredApiKey,
    GenerationFailed,
    HubError,
    HubUnavailable,
    InsufficientCredits,
    InvalidApiKey,
    InvalidRequest,
    MissingApiKey,
    NotFound,
    OutcomeUnknown,
)
from bot.hub.sizes import ASPECT_RATIOS, QUALITIES, TIER_PIXELS, TIERS, parse_size, size_for
from bot.hub.types import (
    Credits,
    GeneratedImage,
    Generation,
    HubModel,
    Reference,
    Usage,
)

__all__ = [
    "ASPECT_RATIOS",
    "QUALITIES",
    "TIERS",
    "TIER_PIXELS",
    "Credits",
    "DownloadError",
    "DownloadTooLarge",
    "ExpiredApiKey",
    "GeneratedImage",
    "Generation",
    "GenerationFailed",
    "HubClient",
    "HubError",
    "HubModel",
    "HubUnavailable",
    "InsufficientCredits",
    "InvalidApiKey",
    "InvalidRequest",
    "MissingApiKey",
    "NotFound",
    "OutcomeUnknown",
    "Reference",
    "Usage",
    "mask_key",
    "parse_size",
    "size_for",
]
