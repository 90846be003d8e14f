"""Where a generation belongs: a server, or a member's own space.

Jobs, member settings, queues and every lookup are scoped by a `guild_id`. A member's own space —
a DM with the bot, or a server where only the member installed the app (user install) — is
`personal_scope(user_id)`, the negated user id: never a server's id (snowflakes are positive), one
per member. So every query that scopes by server keeps such a job to its member, a button pressed
in a server can never reach one, and one pressed in a DM reaches only the presser's own. In a
personal scope only the member's own hub key pays (never a server's or the operator's fallback
key), there is no server budget, and results go to the member only.
"""

from __future__ import annotations


def personal_scope(user_id: int) -> int:
    """The scope of a member's own space (see the module docstring)."""
    return -user_id


def is_personal(scope: int) -> bool:
    return scope < 0
