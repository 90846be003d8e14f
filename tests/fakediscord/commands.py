"""Application commands: registration (bulk overwrite ``PUT``, upsert, edit, delete, global or per guild), the
store the interactions are checked against (``fake.commands()``, ``fake.command()``), the syncs the bot made
(``fake.command_syncs``, ``wait_commands_synced``), and who may see a command
(``default_member_permissions``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import validation
from .models import ADMINISTRATOR, FakeMember
from .rest import APP, HTTPError, RecordedRequest, Route, json_response, route, snow

if TYPE_CHECKING:
    from .state import FakeState


@dataclass(eq=False)
class CommandSync:
    """One bulk overwrite (``PUT``) of application commands: the payload as sent and what the fake stored."""

    guild_id: int | None
    payload: list[dict[str, Any]] = field(repr=False)
    commands: list[dict[str, Any]] = field(repr=False)


class Commands:
    def __init__(self, state: FakeState) -> None:
        self.state = state
        self._commands: dict[int | None, dict[tuple[str, int], dict[str, Any]]] = {}

    def routes(self) -> list[Route]:
        out: list[Route] = []
        for scope in ("", "/guilds/" + snow("gid")):
            base = "/applications/" + APP + scope + "/commands"
            out += [
                route("GET", base, self._h_commands_get),
                route("PUT", base, self._h_commands_put),
                route("POST", base, self._h_command_upsert),
                route("GET", base + "/" + snow("cid"), self._h_command_get),
                route("PATCH", base + "/" + snow("cid"), self._h_command_patch),
                route("DELETE", base + "/" + snow("cid"), self._h_command_delete),
            ]
        permissions = "/applications/" + APP + "/guilds/" + snow("gid") + "/commands/permissions"
        out.append(route("GET", permissions, self._h_command_permissions))
        return out

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """Registered commands (global when ``guild_id`` is None), as the fake answers them."""
        return list(self._commands.get(guild_id, {}).values())

    def command(self, name: str, guild_id: int | None = None, type: int | None = None) -> dict[str, Any]:
        for (n, t), cmd in self._commands.get(guild_id, {}).items():
            if n == name and (type is None or t == type):
                return cmd
        raise KeyError(
            f"no command {name!r} registered ({'guild ' + str(guild_id) if guild_id else 'global'})"
        )

    async def wait_commands_synced(
        self,
        timeout: float = 5.0,
        *,
        guild_id: int | None = None,
        any_scope: bool = True,
    ) -> list[dict[str, Any]]:
        """Wait for a bulk command overwrite; returns the commands registered in that scope. By default any
        scope counts (``any_scope=False``: only ``guild_id``'s, where None means global)."""

        def check() -> CommandSync | None:
            for sync in self.state.command_syncs:
                if (any_scope and guild_id is None) or sync.guild_id == guild_id:
                    return sync
            return None

        sync = await self.state.wait_for(check, timeout, what="an application command sync")
        return self.commands(sync.guild_id)

    def find_command(self, name: str, guild_id: int, ctype: int) -> tuple[dict[str, Any] | None, bool]:
        cmd = self._commands.get(guild_id, {}).get((name, ctype))
        if cmd is not None:
            return cmd, True
        return self._commands.get(None, {}).get((name, ctype)), False

    def check_command_allowed(self, cmd: dict[str, Any], member: FakeMember, name: str) -> None:
        perms = cmd.get("default_member_permissions")
        if perms is None:
            return
        needed = int(perms)
        have = member.permissions
        if have & ADMINISTRATOR or (needed and have & needed == needed):
            return
        raise PermissionError(
            f"{member.name} lacks default_member_permissions={needed} for {name!r}: "
            "Discord would not show the "
            "command to them (pass force=True to send it anyway)"
        )

    def _scope(self, m: re.Match[str]) -> int | None:
        if int(m["app"]) != self.state.application_id:
            raise HTTPError(403, 50001, "Missing Access")
        gid = m.groupdict().get("gid")
        if gid is None:
            return None
        if int(gid) not in self.state.guilds:
            raise HTTPError(403, 50001, "Missing Access")
        return int(gid)

    def _command_from_payload(self, p: dict[str, Any], cid: int, guild_id: int | None) -> dict[str, Any]:
        ctype = int(p.get("type", 1))
        perms = p.get("default_member_permissions")
        cmd = {
            "id": str(cid),
            "application_id": str(self.state.application_id),
            "version": str(self.state._ids.next()),
            "type": ctype,
            "name": p["name"],
            "name_localizations": p.get("name_localizations"),
            "description": p.get("description", "") if ctype == 1 else "",
            "description_localizations": p.get("description_localizations"),
            "default_member_permissions": None if perms is None else str(perms),
            "dm_permission": p.get("dm_permission", True),
            "nsfw": p.get("nsfw", False),
            "contexts": p.get("contexts"),
            "integration_types": p.get("integration_types", [0]),
        }
        if p.get("options"):
            cmd["options"] = p["options"]
        if guild_id is not None:
            cmd["guild_id"] = str(guild_id)
        return cmd

    async def _h_commands_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(self.commands(self._scope(m)))

    async def _h_commands_put(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        scope = self._scope(m)
        payload = rec.json if isinstance(rec.json, list) else []
        error = validation.check_commands(
            payload, guild=scope is not None, installs=self.state.app_integration_types
        )
        if error is not None:
            return json_response(error, status=400)
        old = self._commands.get(scope, {})
        new: dict[tuple[str, int], dict[str, Any]] = {}
        for p in payload:
            key = (p["name"], int(p.get("type", 1)))
            prev = old.get(key)
            new[key] = self._command_from_payload(
                p, int(prev["id"]) if prev else self.state._ids.next(), scope
            )
        self._commands[scope] = new
        self.state.command_syncs.append(CommandSync(scope, payload, list(new.values())))
        return json_response(list(new.values()))

    async def _h_command_upsert(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        scope = self._scope(m)
        p = rec.json or {}
        error = validation.check_commands([p], guild=scope is not None)
        if error is not None:
            return json_response(error, status=400)
        store = self._commands.setdefault(scope, {})
        key = (p["name"], int(p.get("type", 1)))
        prev = store.get(key)
        store[key] = self._command_from_payload(p, int(prev["id"]) if prev else self.state._ids.next(), scope)
        return json_response(store[key], status=200 if prev else 201)

    def _command_by_id(self, m: re.Match[str]) -> tuple[int | None, tuple[str, int], dict[str, Any]]:
        scope = self._scope(m)
        for key, cmd in self._commands.get(scope, {}).items():
            if cmd["id"] == m["cid"]:
                return scope, key, cmd
        raise HTTPError(404, 10063, "Unknown application command")

    async def _h_command_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(self._command_by_id(m)[2])

    async def _h_command_patch(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        scope, key, cmd = self._command_by_id(m)
        merged = {**cmd, **(rec.json or {})}
        new = self._command_from_payload(merged, int(cmd["id"]), scope)
        store = self._commands[scope]
        del store[key]
        store[(new["name"], new["type"])] = new
        return json_response(new)

    async def _h_command_delete(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        scope, key, _ = self._command_by_id(m)
        del self._commands[scope][key]
        return web.Response(status=204)

    async def _h_command_permissions(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        self._scope(m)
        return json_response([])
