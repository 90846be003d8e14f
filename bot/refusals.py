"""Why the bot turns a request down: raised before anything is spent, rendered by the chat side."""

from __future__ import annotations


class Refusal(Exception):
    """The request cannot go ahead; `str()` is the member-facing reason. Nothing was spent."""


class Blocked(Refusal):
    """The server's prompt filters matched (moderators are told; the member is not told which rule)."""

    def __init__(self, prompt: str) -> None:
        super().__init__("This prompt was blocked by this server's filters.")
        self.prompt = prompt
