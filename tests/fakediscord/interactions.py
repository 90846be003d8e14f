"""Interactions the fake sends (INTERACTION_CREATE) and what the bot answered to them, and
:class:`Interactions`: the test's side, a member using Discord's client (slash and context-menu commands,
autocomplete, buttons, selects, modals), which builds each payload and dispatches it on the shard owning the
guild. What the bot answers goes through :mod:`.responses`."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .models import (
    ATTACH_FILES,
    EMBED_LINKS,
    FLAG_EPHEMERAL,
    MENTION_EVERYONE,
    USE_EXTERNAL_EMOJIS,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    walk_components,
)

if TYPE_CHECKING:
    from .commands import Commands
    from .gateway import Gateway
    from .messages import Messages
    from .server import FakeDiscord

# Upload limit in DMs (no server boost applies there).
DM_UPLOAD_LIMIT = 10 * 1024 * 1024
# interaction types
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
# callback types
CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE, CB_AUTOCOMPLETE, CB_MODAL = 4, 5, 6, 7, 8, 9

# option types
OPT_SUB, OPT_GROUP, OPT_STRING, OPT_INTEGER, OPT_BOOLEAN, OPT_USER, OPT_CHANNEL, OPT_ROLE = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
)
OPT_MENTIONABLE, OPT_NUMBER, OPT_ATTACHMENT = 9, 10, 11


@dataclass(eq=False)
class FakeCallback:
    """The bot's answer to ``POST /interactions/{id}/{token}/callback``.

    ``accepted`` is False when the fake refused it (3 s rule, already acknowledged, invalid, too large);
    ``status``/``error`` then say how.
    """

    type: int
    data: dict[str, Any]
    attachments: list[FakeAttachment]
    status: int
    error: dict[str, Any] | None = None
    with_response: bool = True

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def content(self) -> str | None:
        return self.data.get("content")

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.data.get("embeds") or [])

    @property
    def components(self) -> list[dict[str, Any]]:
        return list(self.data.get("components") or [])

    @property
    def choices(self) -> list[dict[str, Any]]:
        """Autocomplete choices (type 8)."""
        return list(self.data.get("choices") or [])

    @property
    def custom_id(self) -> str | None:
        """Modal custom id (type 9)."""
        return self.data.get("custom_id")

    @property
    def text_inputs(self) -> list[str]:
        """A modal's text inputs (type 4), in order, whether in labels (type 18) or legacy action rows."""
        return [c["custom_id"] for c in walk_components(self.components) if c.get("type") == 4]

    @property
    def title(self) -> str | None:
        return self.data.get("title")


@dataclass(eq=False)
class FakeInteraction:
    """An interaction the fake dispatched, and everything the bot did with its token."""

    fake: FakeDiscord = field(repr=False)
    id: int
    token: str
    type: int
    name: str | None
    guild_id: int | None  # None in a DM (context BOT_DM)
    channel_id: int
    member: FakeMember
    payload: dict[str, Any] = field(repr=False)
    #: message the component/modal belongs to (button presses, modal submitted from a button)
    source_message: FakeMessage | None = None
    created_at: float = 0.0  # loop time of the dispatch
    callback_record: FakeCallback | None = None
    #: every callback attempt, including refused ones
    callback_attempts: list[FakeCallback] = field(default_factory=list, repr=False)
    original_message: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    #: PATCH payloads applied to ``@original`` (in order)
    edits: list[dict[str, Any]] = field(default_factory=list)
    acked: bool = False
    dead: bool = False  # first callback came too late: token unusable
    expired: bool = False  # fake.expire_interaction()
    original_deleted: bool = False

    @property
    def data(self) -> dict[str, Any]:
        return self.payload.get("data") or {}

    async def callback(self, timeout: float = 5.0) -> FakeCallback:
        """Wait for the bot's first callback attempt (accepted or not)."""

        def check() -> FakeCallback | None:
            return self.callback_attempts[0] if self.callback_attempts else None

        return await self.fake.wait_for(check, timeout, what=f"a callback for {self._describe()}")

    async def original(
        self,
        timeout: float = 5.0,
        predicate: Callable[[FakeMessage], bool] | None = None,
    ) -> FakeMessage:
        """The current original response. After a deferred callback (5/6), waits for the first edit (or the
        followup that replaces the "thinking" message); ``predicate`` waits for a particular state."""

        def check() -> FakeMessage | None:
            cb = self.callback_record
            msg = self.original_message
            if cb is None or msg is None:
                return None
            if cb.type in (CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE) and not self.edits and msg.loading:
                return None
            if cb.type == CB_DEFERRED_UPDATE and not self.edits:
                return None
            if predicate is not None and not predicate(msg):
                return None
            return msg

        return await self.fake.wait_for(check, timeout, what=f"the original response of {self._describe()}")

    async def followup(self, index: int = 0, timeout: float = 5.0) -> FakeMessage:
        """Wait for followup number ``index`` (0-based)."""

        def check() -> FakeMessage | None:
            return self.followups[index] if len(self.followups) > index else None

        return await self.fake.wait_for(check, timeout, what=f"followup #{index} of {self._describe()}")

    async def choices(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        cb = await self.callback(timeout)
        if cb.type != CB_AUTOCOMPLETE:
            raise AssertionError(f"expected an autocomplete result (8), got callback type {cb.type}")
        return cb.choices

    def _describe(self) -> str:
        kind = {2: "command", 3: "component", 4: "autocomplete", 5: "modal submit"}.get(
            self.type, "interaction"
        )
        return f"{kind} {self.name!r} (interaction {self.id})"


# -- option building -------------------------------------------------------------------------------------

_PY_TYPES: list[tuple[type, int]] = [
    (bool, OPT_BOOLEAN),
    (int, OPT_INTEGER),
    (float, OPT_NUMBER),
    (str, OPT_STRING),
    (FakeAttachment, OPT_ATTACHMENT),
    (FakeMember, OPT_USER),
    (FakeUser, OPT_USER),
    (FakeRole, OPT_ROLE),
    (FakeChannel, OPT_CHANNEL),
]


def infer_option_type(value: Any) -> int:
    for py, t in _PY_TYPES:
        if isinstance(value, py):
            return t
    raise TypeError(f"cannot infer an option type for {value!r}; register the command or pass raw options")


class OptionBuilder:
    """Turns ``{"name": value}`` into Discord's ``options`` + ``resolved`` using the registered definition."""

    def __init__(self, fake: FakeDiscord, guild_id: int, channel_id: int) -> None:
        self.fake = fake
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.resolved: dict[str, dict[str, Any]] = {}

    def _add_resolved(self, kind: str, key: int, value: dict[str, Any]) -> None:
        self.resolved.setdefault(kind, {})[str(key)] = value

    def build(
        self,
        definitions: list[dict[str, Any]] | None,
        values: Mapping[str, Any],
        *,
        focused: str | None = None,
        validate: bool = True,
    ) -> list[dict[str, Any]]:
        defs = {d["name"]: d for d in (definitions or []) if d.get("type") not in (OPT_SUB, OPT_GROUP)}
        out: list[dict[str, Any]] = []
        for name, value in values.items():
            d = defs.get(name)
            if d is None and definitions is not None and validate:
                raise ValueError(f"unknown option {name!r}; the command defines {sorted(defs)}")
            otype = int(d["type"]) if d else infer_option_type(value)
            opt: dict[str, Any] = {"name": name, "type": otype}
            if name == focused:
                opt["value"] = str(value)
                opt["focused"] = True
            else:
                opt["value"] = self._value(otype, value)
                if validate and d is not None:
                    self._check(d, opt["value"])
            out.append(opt)
        if validate and focused is None:
            missing = [n for n, d in defs.items() if d.get("required") and n not in values]
            if missing:
                raise ValueError(
                    f"required options missing: {missing} (Discord's client would not send this)"
                )
        return out

    @staticmethod
    def _check(d: dict[str, Any], value: Any) -> None:
        name = d["name"]
        choices = d.get("choices") or []
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"option {name!r}: {value!r} is not one of the choices {choices}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if d.get("min_value") is not None and value < d["min_value"]:
                raise ValueError(f"option {name!r}: {value} < min_value {d['min_value']}")
            if d.get("max_value") is not None and value > d["max_value"]:
                raise ValueError(f"option {name!r}: {value} > max_value {d['max_value']}")
        if isinstance(value, str) and d.get("type") == OPT_STRING:
            if d.get("min_length") is not None and len(value) < d["min_length"]:
                raise ValueError(f"option {name!r}: shorter than min_length {d['min_length']}")
            if d.get("max_length") is not None and len(value) > d["max_length"]:
                raise ValueError(f"option {name!r}: longer than max_length {d['max_length']}")

    def _value(self, otype: int, value: Any) -> Any:
        if otype == OPT_STRING:
            return str(value)
        if otype == OPT_INTEGER:
            return int(value)
        if otype == OPT_BOOLEAN:
            return bool(value)
        if otype == OPT_NUMBER:
            return float(value)
        if otype == OPT_ATTACHMENT:
            if not isinstance(value, FakeAttachment):
                raise TypeError(f"attachment options take a FakeAttachment, got {value!r}")
            self.fake.register_attachment(value)
            self._add_resolved("attachments", value.id, value.to_payload())
            return str(value.id)
        if otype in (OPT_USER, OPT_MENTIONABLE) and isinstance(value, FakeMember | FakeUser):
            return str(self.resolve_user(value))
        if otype in (OPT_ROLE, OPT_MENTIONABLE) and isinstance(value, FakeRole):
            self._add_resolved("roles", value.id, value.to_payload())
            return str(value.id)
        if otype == OPT_CHANNEL:
            channel = value if isinstance(value, FakeChannel) else self.fake.channel(int(value))
            payload = channel.to_payload()
            guild = self.fake.guilds.get(self.guild_id)
            if guild is not None:
                member = guild.members.get(self.fake.bot_user.id)
                if member is not None:
                    payload["permissions"] = str(guild.channel_permissions(member, channel.id))
            self._add_resolved("channels", channel.id, payload)
            return str(channel.id)
        if otype in (OPT_USER, OPT_MENTIONABLE, OPT_ROLE):
            return str(int(value))
        raise TypeError(f"unsupported option type {otype}")

    def resolve_user(self, value: FakeMember | FakeUser) -> int:
        if isinstance(value, FakeMember):
            self._add_resolved("users", value.id, value.user.to_payload())
            guild = value.guild
            self._add_resolved(
                "members",
                value.id,
                value.to_payload(
                    with_user=False, permissions=guild.channel_permissions(value, self.channel_id)
                ),
            )
            return value.id
        self._add_resolved("users", value.id, value.to_payload())
        in_guild = self.fake.guilds.get(self.guild_id)
        if in_guild is not None and value.id in in_guild.members:
            m = in_guild.members[value.id]
            self._add_resolved("members", value.id, m.to_payload(with_user=False))
        return value.id


def nest_options(
    path: Sequence[str], leaf: list[dict[str, Any]], definitions: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Wrap leaf options into subcommand / group options following ``path`` (without the root name)."""
    if not path:
        return leaf
    types: list[int] = []
    defs = definitions
    for name in path:
        d = next(
            (o for o in defs or [] if o.get("name") == name and o.get("type") in (OPT_SUB, OPT_GROUP)), None
        )
        if defs is not None and d is None:
            raise ValueError(f"no subcommand or group {name!r} in {[o.get('name') for o in defs]}")
        types.append(int(d["type"]) if d else (OPT_GROUP if len(types) < len(path) - 1 else OPT_SUB))
        defs = d.get("options") if d else None
    options = leaf
    for name, t in reversed(list(zip(path, types, strict=True))):
        options = [{"name": name, "type": t, "options": options}]
    return options


def leaf_definitions(command: dict[str, Any] | None, path: Sequence[str]) -> list[dict[str, Any]] | None:
    if command is None:
        return None
    defs: list[dict[str, Any]] = command.get("options") or []
    for name in path:
        d = next((o for o in defs if o.get("name") == name), None)
        if d is None:
            return None
        defs = d.get("options") or []
    return defs


def modal_submit_components(
    modal_components: list[dict[str, Any]],
    values: Mapping[str, Any],
    register: Callable[[FakeAttachment], dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Mirror a modal's components (action rows / labels) as a submit payload carrying ``values``."""
    resolved: dict[str, Any] = {}
    used: set[str] = set()

    def convert(comp: dict[str, Any]) -> dict[str, Any] | None:
        ctype = comp.get("type")
        if ctype == 1:
            children = [c for c in (convert(x) for x in comp.get("components") or []) if c is not None]
            return {"type": 1, "id": comp.get("id", 0), "components": children}
        if ctype == 18:
            inner = convert(comp["component"])
            return {"type": 18, "id": comp.get("id", 0), "component": inner} if inner else None
        if ctype == 10:
            return {"type": 10, "id": comp.get("id", 0)}
        custom_id = comp.get("custom_id")
        if custom_id is None:
            return None
        out: dict[str, Any] = {"type": ctype, "id": comp.get("id", 0), "custom_id": custom_id}
        has = custom_id in values
        value = values.get(custom_id)
        used.add(custom_id)
        if ctype == 4:
            text = "" if value is None else str(value)
            if comp.get("required", True) and not text:
                raise ValueError(f"text input {custom_id!r} is required")
            if comp.get("max_length") is not None and len(text) > comp["max_length"]:
                raise ValueError(f"text input {custom_id!r} longer than max_length {comp['max_length']}")
            if text and comp.get("min_length") is not None and len(text) < comp["min_length"]:
                raise ValueError(f"text input {custom_id!r} shorter than min_length {comp['min_length']}")
            out["value"] = text
        elif ctype == 19:
            atts = list(value or [])
            if comp.get("required", True) and not atts:
                raise ValueError(f"file upload {custom_id!r} is required")
            ids = []
            for a in atts:
                payload = register(a)
                resolved.setdefault("attachments", {})[payload["id"]] = payload
                ids.append(payload["id"])
            out["values"] = ids
        elif ctype in (21,):
            out["value"] = value
        elif ctype == 23:
            out["value"] = bool(value)
        else:  # selects (3, 5-8), checkbox group (22)
            vals = [str(v) for v in (value or [])] if has else []
            out["values"] = vals
        return out

    comps = [c for c in (convert(c) for c in modal_components) if c is not None]
    unknown = set(values) - used
    if unknown:
        raise ValueError(f"the modal has no inputs {sorted(unknown)}")
    return comps, resolved


def _outside_a_guild_install(it: FakeInteraction) -> bool:
    """A DM or private channel, or a server where only the user installed the app (no server key)."""
    owners = it.payload.get("authorizing_integration_owners") or {}
    return int(it.payload.get("context", 0)) != 0 or "0" not in owners


class Interactions:
    """The test's side of interactions. It holds the whole fake (what it builds, :class:`FakeInteraction` and
    :class:`OptionBuilder`, reaches it), and the resources whose internals it needs."""

    def __init__(self, fake: FakeDiscord, commands: Commands, gateway: Gateway, messages: Messages) -> None:
        self.fake = fake
        self.commands = commands
        self.gateway = gateway
        self.messages = messages

    def _new_interaction(
        self,
        itype: int,
        name: str | None,
        guild: FakeGuild,
        channel_id: int,
        member: FakeMember,
        data: dict[str, Any],
        *,
        message: FakeMessage | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        if channel_id not in guild.channels:
            raise KeyError(f"channel {channel_id} is not in guild {guild.name!r}")
        if member.id not in guild.members:
            raise KeyError(f"{member.name} is not a member of guild {guild.name!r}")
        iid = self.fake._ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        channel = guild.channels[channel_id].to_payload()
        channel["permissions"] = str(guild.channel_permissions(member, channel_id))
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.fake.application_id),
            "type": itype,
            "data": data,
            "guild": guild.interaction_guild_payload(),
            "guild_id": str(guild.id),
            "channel": channel,
            "channel_id": str(channel_id),
            "member": member.to_payload(permissions=guild.channel_permissions(member, channel_id)),
            "token": token,
            "version": 1,
            "app_permissions": str(guild.channel_permissions(guild.bot_member, channel_id)),
            "locale": locale,
            "guild_locale": guild.preferred_locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": guild.upload_limit,
        }
        if message is not None:
            payload["message"] = message.to_payload(self.messages.resolve_reference)
        return FakeInteraction(
            self.fake, iid, token, itype, name, guild.id, channel_id, member, payload, source_message=message
        )

    def _context_command(
        self, kind: str, ctype: int, name: str, guild: FakeGuild, member: FakeMember, *, force: bool
    ) -> tuple[dict[str, Any] | None, bool]:
        """The registered context-menu command (guild scope first, and whether it is a guild command),
        refused as Discord's client would: unknown (unless ``strict_commands`` is off), or hidden from
        ``member`` by ``default_member_permissions`` (unless ``force``)."""
        cmd, is_guild = self.commands.find_command(name, guild.id, ctype)
        if cmd is None and self.fake.strict_commands:
            raise LookupError(f"{kind} command {name!r} is not registered")
        if cmd is not None and not force:
            self.commands.check_command_allowed(cmd, member, name)
        return cmd, is_guild

    async def _send_interaction(self, it: FakeInteraction, ready_timeout: float) -> FakeInteraction:
        session = await self.fake.wait_for(
            lambda: self.gateway.live_session_for(it.guild_id),
            ready_timeout,
            what=f"a connected, ready gateway session for guild {it.guild_id}",
        )
        self.fake.interactions.append(it)
        self.fake._interactions_by_token[it.token] = it
        it.created_at = asyncio.get_running_loop().time()
        await session.dispatch("INTERACTION_CREATE", it.payload)
        self.fake._notify()
        return it

    async def slash(
        self,
        guild_id: int | FakeGuild,
        channel_id: int,
        member: FakeMember,
        command: str | Sequence[str],
        options: Mapping[str, Any] | Sequence[dict[str, Any]] | None = None,
        *,
        attachments: Sequence[FakeAttachment] = (),
        force: bool = False,
        locale: str = "en-US",
        ready_timeout: float = 5.0,
        dispatch: bool = True,
        _autocomplete_focus: str | None = None,
    ) -> FakeInteraction:
        """Invoke a slash command. ``command``: "name", "group sub" or ["group", "sub"]; ``options``: a dict
        of leaf option values (typed by the registered definition: FakeAttachment, FakeMember, FakeRole,
        channel id…), a nested dict ``{"sub": {"opt": 1}}``, or raw Discord option dicts. ``attachments``
        fill the command's attachment options in order. Refuses (``PermissionError``) when ``member`` lacks
        the command's ``default_member_permissions``, unless ``force``. ``dispatch=False``: the interaction
        is created and its token works, but no gateway session gets it (a client answering over HTTP
        with the id and token handed to it, e.g. a benchmark's baseline)."""
        guild = self.fake.guild(guild_id)
        _, path, data = self._slash_data(
            guild.id, channel_id, member, command, options, attachments, force, _autocomplete_focus
        )
        itype = AUTOCOMPLETE if _autocomplete_focus is not None else APPLICATION_COMMAND
        it = self._new_interaction(itype, " ".join(path), guild, channel_id, member, data, locale=locale)
        if not dispatch:
            self.fake.interactions.append(it)
            self.fake._interactions_by_token[it.token] = it
            it.created_at = asyncio.get_running_loop().time()
            return it
        return await self._send_interaction(it, ready_timeout)

    def _slash_data(
        self,
        guild_id: int | None,
        channel_id: int,
        member: FakeMember,
        command: str | Sequence[str],
        options: Mapping[str, Any] | Sequence[dict[str, Any]] | None,
        attachments: Sequence[FakeAttachment],
        force: bool,
        focused: str | None = None,
    ) -> tuple[dict[str, Any] | None, list[str], dict[str, Any]]:
        """The registered command, the command path and the interaction's ``data`` for a slash command
        (global commands only when ``guild_id`` is None, as in a DM)."""
        path = command.split() if isinstance(command, str) else list(command)
        values: Mapping[str, Any] | None = options if isinstance(options, Mapping) else None
        while values is not None and len(values) == 1:
            ((key, inner),) = values.items()
            if isinstance(inner, Mapping):
                path.append(key)
                values = inner
            else:
                break
        root, sub = path[0], path[1:]
        cmd, is_guild = self.commands.find_command(root, guild_id or 0, 1)
        if cmd is not None and not force:  # hidden from the member: refused before any option is read
            self.commands.check_command_allowed(cmd, member, root)
        if cmd is None and self.fake.strict_commands:
            known = self.fake.commands() + (self.fake.commands(guild_id) if guild_id else [])
            raise LookupError(
                f"slash command {root!r} is not registered (registered: {[c['name'] for c in known]})"
            )
        builder = OptionBuilder(self.fake, guild_id or 0, channel_id)
        if options is not None and not isinstance(options, Mapping):
            leaf: list[dict[str, Any]] = [dict(o) for o in options]
            built = nest_options(sub, leaf, cmd.get("options") if cmd else None) if sub else leaf
        else:
            defs = leaf_definitions(cmd, sub)
            vals = dict(values or {})
            pending = list(attachments)
            for d in defs or []:
                if pending and d.get("type") == OPT_ATTACHMENT and d["name"] not in vals:
                    vals[d["name"]] = pending.pop(0)
            if pending:
                raise ValueError("more attachments than attachment options")
            leaf = builder.build(defs, vals, focused=focused, validate=not force)
            built = nest_options(sub, leaf, cmd.get("options") if cmd else None)
        data: dict[str, Any] = {
            "id": str(cmd["id"]) if cmd else str(self.fake._ids.next()),
            "name": root,
            "type": 1,
        }
        if built:
            data["options"] = built
        if builder.resolved:
            data["resolved"] = builder.resolved
        if is_guild and guild_id:
            data["guild_id"] = str(guild_id)
        return cmd, path, data

    @staticmethod
    def _check_reachable(cmd: dict[str, Any] | None, name: str, *, context: int, integration: int) -> None:
        """Discord's client offers a command only where its ``contexts`` (GUILD 0, BOT_DM 1,
        PRIVATE_CHANNEL 2) and ``integration_types`` (GUILD_INSTALL 0, USER_INSTALL 1) allow it
        (a command registered without ``contexts`` is offered everywhere its install is)."""
        if cmd is None:
            return
        contexts = cmd.get("contexts")
        if contexts is not None and context not in contexts:
            raise PermissionError(f"{name!r} is not offered in interaction context {context} ({contexts})")
        if integration not in (cmd.get("integration_types") or [0]):
            raise PermissionError(f"{name!r} is not offered for installation context {integration}")

    async def dm_slash(
        self,
        member: FakeMember,
        command: str | Sequence[str],
        options: Mapping[str, Any] | Sequence[dict[str, Any]] | None = None,
        *,
        attachments: Sequence[FakeAttachment] = (),
        user_install: bool = False,
        locale: str = "en-US",
        ready_timeout: float = 5.0,
    ) -> FakeInteraction:
        """A slash command in ``member``'s DM with the bot (context BOT_DM, 1): no guild, ``user`` instead
        of ``member``. Through the server install the owners map is ``{"0": "0"}``; with
        ``user_install`` the app is also installed to the user's account (``"1"``: their id)."""
        channel = self.fake.open_dm(member.user)
        cmd, path, data = self._slash_data(None, channel.id, member, command, options, attachments, False)
        self._check_reachable(cmd, path[0], context=1, integration=1 if user_install else 0)
        owners = {"1": str(member.id)} if user_install else {"0": "0"}
        payload = self._payload(
            APPLICATION_COMMAND, data, channel.to_payload(), context=1, owners=owners, locale=locale
        )
        payload["user"] = member.user.to_payload()
        # DMs with the bot: the documented app permissions for (G)DMs, with external emojis.
        payload["app_permissions"] = str(ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE | USE_EXTERNAL_EMOJIS)
        payload["attachment_size_limit"] = DM_UPLOAD_LIMIT
        it = FakeInteraction(
            self.fake,
            int(payload["id"]),
            payload["token"],
            APPLICATION_COMMAND,
            " ".join(path),
            None,
            channel.id,
            member,
            payload,
        )
        return await self._send_interaction(it, ready_timeout)

    async def user_install_slash(
        self,
        guild_id: int | FakeGuild,
        channel_id: int,
        member: FakeMember,
        command: str | Sequence[str],
        options: Mapping[str, Any] | Sequence[dict[str, Any]] | None = None,
        *,
        attachments: Sequence[FakeAttachment] = (),
        locale: str = "en-US",
        ready_timeout: float = 5.0,
    ) -> FakeInteraction:
        """A slash command of the app installed to ``member``'s account, used in a server (context GUILD)
        the bot need not be in: ``authorizing_integration_owners`` holds only the user key ``"1"``, and the
        command must list USER_INSTALL in its ``integration_types``."""
        guild = self.fake.guild(guild_id)
        if channel_id not in guild.channels or member.id not in guild.members:
            raise KeyError(f"channel {channel_id} or {member.name} is not in guild {guild.name!r}")
        cmd, path, data = self._slash_data(None, channel_id, member, command, options, attachments, False)
        self._check_reachable(cmd, path[0], context=0, integration=1)
        channel = guild.channels[channel_id].to_payload()
        permissions = guild.channel_permissions(member, channel_id)
        channel["permissions"] = str(permissions)
        payload = self._payload(
            APPLICATION_COMMAND, data, channel, context=0, owners={"1": str(member.id)}, locale=locale
        )
        payload.update(
            guild=guild.interaction_guild_payload(),
            guild_id=str(guild.id),
            member=member.to_payload(permissions=permissions),
            app_permissions=str(guild.everyone.permissions),  # no bot member: what @everyone may do
            guild_locale=guild.preferred_locale,
            attachment_size_limit=guild.upload_limit,
        )
        it = FakeInteraction(
            self.fake,
            int(payload["id"]),
            payload["token"],
            APPLICATION_COMMAND,
            " ".join(path),
            guild.id,
            channel_id,
            member,
            payload,
        )
        return await self._send_interaction(it, ready_timeout)

    def _payload(
        self,
        itype: int,
        data: dict[str, Any],
        channel: dict[str, Any],
        *,
        context: int,
        owners: dict[str, str],
        locale: str = "en-US",
    ) -> dict[str, Any]:
        return {
            "id": str(self.fake._ids.next()),
            "application_id": str(self.fake.application_id),
            "type": itype,
            "data": data,
            "channel": channel,
            "channel_id": channel["id"],
            "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48),
            "version": 1,
            "locale": locale,  # the member's Discord language
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": owners,
            "context": context,
        }

    async def autocomplete(
        self,
        guild_id: int | FakeGuild,
        channel_id: int,
        member: FakeMember,
        command: str | Sequence[str],
        options: Mapping[str, Any],
        focused: str,
        *,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Send an autocomplete interaction (``focused`` names the option being typed, its value in
        ``options`` is the partial text) and return the choices the bot answered with."""
        if focused not in options:
            raise ValueError(f"{focused!r} must be in options (its value is the text typed so far)")
        it = await self.slash(
            guild_id, channel_id, member, command, options, force=True, _autocomplete_focus=focused
        )
        return await it.choices(timeout)

    async def message_command(
        self,
        guild_id: int | FakeGuild,
        channel_id: int,
        member: FakeMember,
        name: str,
        target_message: FakeMessage,
        *,
        force: bool = False,
        locale: str = "en-US",
        ready_timeout: float = 5.0,
    ) -> FakeInteraction:
        """Invoke a message context-menu command on ``target_message``."""
        guild = self.fake.guild(guild_id)
        cmd, is_guild = self._context_command("message", 3, name, guild, member, force=force)
        data: dict[str, Any] = {
            "id": str(cmd["id"]) if cmd else str(self.fake._ids.next()),
            "name": name,
            "type": 3,
            "target_id": str(target_message.id),
            "resolved": {
                "messages": {
                    str(target_message.id): target_message.to_payload(self.messages.resolve_reference)
                }
            },
        }
        if is_guild:
            data["guild_id"] = str(guild.id)
        it = self._new_interaction(APPLICATION_COMMAND, name, guild, channel_id, member, data, locale=locale)
        return await self._send_interaction(it, ready_timeout)

    async def user_command(
        self,
        guild_id: int | FakeGuild,
        channel_id: int,
        member: FakeMember,
        name: str,
        target: FakeMember,
        *,
        force: bool = False,
        ready_timeout: float = 5.0,
    ) -> FakeInteraction:
        """Invoke a user context-menu command on ``target``."""
        guild = self.fake.guild(guild_id)
        cmd, is_guild = self._context_command("user", 2, name, guild, member, force=force)
        builder = OptionBuilder(self.fake, guild.id, channel_id)
        builder.resolve_user(target)
        data: dict[str, Any] = {
            "id": str(cmd["id"]) if cmd else str(self.fake._ids.next()),
            "name": name,
            "type": 2,
            "target_id": str(target.id),
            "resolved": builder.resolved,
        }
        if is_guild:
            data["guild_id"] = str(guild.id)
        it = self._new_interaction(APPLICATION_COMMAND, name, guild, channel_id, member, data)
        return await self._send_interaction(it, ready_timeout)

    async def press_button(
        self,
        message: FakeMessage,
        custom_id: str,
        member: FakeMember,
        *,
        values: Sequence[str] | None = None,
        force: bool = False,
        locale: str = "en-US",
        ready_timeout: float = 5.0,
    ) -> FakeInteraction:
        """Click a button (or pick ``values`` in a select) of ``message``. Refuses missing/disabled components
        unless ``force`` (Discord's client could not send those). ``locale``: the member's Discord
        language."""
        comp = message.find_component(custom_id)
        if comp is None and not force:
            raise LookupError(
                f"message {message.id} has no component {custom_id!r} (has {message.custom_ids})"
            )
        if comp is not None and comp.get("disabled") and not force:
            raise ValueError(f"component {custom_id!r} is disabled")
        ctype = int(comp["type"]) if comp else (3 if values is not None else 2)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": ctype}
        if ctype in (3, 5, 6, 7, 8):
            data["values"] = [str(v) for v in values or []]
        if message.interaction is not None and _outside_a_guild_install(message.interaction):
            it = self._like(message.interaction, MESSAGE_COMPONENT, custom_id, member, data, message=message)
            return await self._send_interaction(it, ready_timeout)
        if message.guild_id is None:
            raise ValueError(
                "component interactions are only supported in guild channels and on interaction replies"
            )
        guild = self.fake.guilds[message.guild_id]
        it = self._new_interaction(
            MESSAGE_COMPONENT,
            custom_id,
            guild,
            message.channel_id,
            member,
            data,
            message=message,
            locale=locale,
        )
        return await self._send_interaction(it, ready_timeout)

    async def select(
        self, message: FakeMessage, custom_id: str, values: Sequence[str], member: FakeMember, **kwargs: Any
    ) -> FakeInteraction:
        return await self.press_button(message, custom_id, member, values=values, **kwargs)

    async def submit_modal(
        self,
        source: FakeInteraction | str,
        values: Mapping[str, Any],
        member: FakeMember | None = None,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        components: list[dict[str, Any]] | None = None,
        locale: str | None = None,
        timeout: float = 5.0,
    ) -> FakeInteraction:
        """Submit the modal the bot opened in answer to ``source`` (or a modal by custom id, with
        ``components`` or plain text inputs named by ``values``). ``values``: custom_id → text (text input),
        list of strings (selects, checkbox group), list of FakeAttachment (file upload), bool (checkbox).
        ``locale``: the member's Discord language (default: the source interaction's, else en-US)."""
        message: FakeMessage | None = None
        if isinstance(source, FakeInteraction):
            cb = await source.callback(timeout)
            if cb.type != CB_MODAL:
                raise AssertionError(f"the bot answered with callback type {cb.type}, not a modal (9)")
            custom_id = cb.data["custom_id"]
            comps = cb.data.get("components") or []
            member = member or source.member
            guild_id = source.guild_id
            channel_id = source.channel_id
            message = source.source_message
            locale = locale or source.payload.get("locale")
        else:
            custom_id = source
            comps = components or [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "required": False}]} for k in values
            ]
            if member is None or guild_id is None or channel_id is None:
                raise ValueError("a modal by custom id needs member, guild_id and channel_id")
        submit, resolved = modal_submit_components(
            comps, values, lambda a: self.fake.register_attachment(a).to_payload()
        )
        data: dict[str, Any] = {"custom_id": custom_id, "components": submit}
        if resolved:
            data["resolved"] = resolved
        if isinstance(source, FakeInteraction) and _outside_a_guild_install(source):
            assert member is not None
            it = self._like(source, MODAL_SUBMIT, custom_id, member, data, message=message)
            return await self._send_interaction(it, timeout)
        if guild_id is None:
            raise ValueError("a modal by custom id needs member, guild_id and channel_id")
        guild = self.fake.guilds[guild_id]
        it = self._new_interaction(
            MODAL_SUBMIT,
            custom_id,
            guild,
            channel_id,
            member,
            data,
            message=message,
            locale=locale or "en-US",
        )
        return await self._send_interaction(it, timeout)

    def _like(
        self,
        source: FakeInteraction,
        itype: int,
        name: str | None,
        member: FakeMember,
        data: dict[str, Any],
        *,
        message: FakeMessage | None = None,
    ) -> FakeInteraction:
        """A follow-on interaction (a form sent, a button pressed) in the same place as ``source``: a DM,
        or a server where only the user installed the app. Same context, owners and channel."""
        p = source.payload
        owners = dict(p.get("authorizing_integration_owners") or {})
        payload = self._payload(
            itype,
            data,
            p["channel"],
            context=int(p.get("context", 0)),
            owners=owners,
            locale=str(p.get("locale") or "en-US"),  # the same member's Discord
        )
        for key in (
            "guild",
            "guild_id",
            "member",
            "user",
            "app_permissions",
            "guild_locale",
            "attachment_size_limit",
        ):
            if key in p:
                payload[key] = p[key]
        if message is not None:
            payload["message"] = message.to_payload(self.messages.resolve_reference)
        return FakeInteraction(
            self.fake,
            int(payload["id"]),
            payload["token"],
            itype,
            name,
            source.guild_id,
            source.channel_id,
            member,
            payload,
            source_message=message,
        )

    def expire_interaction(self, interaction: FakeInteraction | str) -> None:
        """Make the interaction token unusable as after 15 minutes: webhook calls answer 401 50027."""
        it = (
            interaction
            if isinstance(interaction, FakeInteraction)
            else self.fake._interactions_by_token[interaction]
        )
        it.expired = True
