"""image-hub-bot: a self-hosted Discord bot for the GPT Image Hub API."""

__version__ = "0.1.0"
