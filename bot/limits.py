"""Counters of work under way per member and per server (reference downloads, /show).

A server's interactions all reach the process that holds its shard, so counting in the process
bounds a member's and a server's work however many processes run. Entries go when they reach
zero: the counters hold only what is running.
"""

from __future__ import annotations


class WorkCounts:
    """How many of something run now: per member (of a server), per server, and in all."""

    def __init__(self) -> None:
        self._members: dict[tuple[int, int], int] = {}
        self._guilds: dict[int, int] = {}
        self.total = 0

    def member(self, guild_id: int, user_id: int) -> int:
        return self._members.get((guild_id, user_id), 0)

    def guild(self, guild_id: int) -> int:
        return self._guilds.get(guild_id, 0)

    def add(self, guild_id: int, user_id: int) -> None:
        self._members[(guild_id, user_id)] = self.member(guild_id, user_id) + 1
        self._guilds[guild_id] = self.guild(guild_id) + 1
        self.total += 1

    def remove(self, guild_id: int, user_id: int) -> None:
        self.total -= 1
        left = self.member(guild_id, user_id) - 1
        if left > 0:
            self._members[(guild_id, user_id)] = left
        else:
            self._members.pop((guild_id, user_id), None)
        left = self.guild(guild_id) - 1
        if left > 0:
            self._guilds[guild_id] = left
        else:
            self._guilds.pop(guild_id, None)

    def __len__(self) -> int:
        """Distinct members with something running (for tests: the counters don't grow)."""
        return len(self._members)
