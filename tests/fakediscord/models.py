"""Plain data model of the fake Discord: snowflakes, users, guilds, roles, channels, messages, attachments.

Nothing here talks to the network; :mod:`tests.fakediscord.server` owns the state and serves it.
"""

from __future__ import annotations

import datetime as _dt
import io
import mimetypes
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .interactions import FakeInteraction
    from .state import FakeState

DISCORD_EPOCH_MS = 1420070400000

# Permission bits (https://discord.com/developers/docs/topics/permissions)
CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_AUDIT_LOG = 1 << 7
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
MANAGE_ROLES = 1 << 28
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
MODERATE_MEMBERS = 1 << 40
ALL_PERMISSIONS = (1 << 53) - 1

#: What @everyone gets in a freshly created guild (close to Discord's default).
DEFAULT_EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)
#: What the bot's managed role gets by default (a typical invite link's permissions).
DEFAULT_BOT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
    | SEND_MESSAGES_IN_THREADS
    | USE_APPLICATION_COMMANDS
)

# Message flags
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15

MIB = 1024 * 1024
#: Upload limit per file by premium tier (Discord raised the base limit to 10 MiB in 2024).
UPLOAD_LIMIT_BY_TIER = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}


def _perm_value(p: Any) -> int:
    """Accept an int or anything with ``.value`` (``discord.Permissions``)."""
    if p is None:
        return 0
    return int(getattr(p, "value", p))


class SnowflakeGenerator:
    """Strictly increasing snowflakes whose timestamp part is (about) the current time."""

    def __init__(self) -> None:
        self._last_ms = 0
        self._inc = 0

    def next(self, *, shard: tuple[int, int] | None = None) -> int:
        """A new id. ``shard=(shard_id, shard_count)`` picks one that Discord would route to that shard."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        if ms <= self._last_ms:
            ms = self._last_ms
            self._inc += 1
            if self._inc >= 4096:
                ms += 1
                self._inc = 0
        else:
            self._inc = 0
        if shard is not None:
            sid, count = shard
            if not 0 <= sid < count:
                raise ValueError(f"invalid shard {shard!r}")
            if ms % count != sid or self._inc:
                ms += 1
                while ms % count != sid:
                    ms += 1
                self._inc = 0
        self._last_ms = ms
        return (ms << 22) | self._inc


def snowflake_time(snowflake: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, _dt.UTC)


def iso_from_snowflake(snowflake: int) -> str:
    return snowflake_time(snowflake).isoformat()


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    if not data:
        return None, None
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None, None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.width, im.height
    except Exception:
        return None, None


@dataclass(eq=False)
class FakeAttachment:
    """A file: either one a test offers to the bot (slash option, user message, modal upload) or one the bot
    posted (stored on a :class:`FakeMessage`).

    ``content_type`` is what Discord *declares* in the attachment payload (``None`` = guessed from the
    filename like Discord does, ``""`` = omitted from the payload). ``size`` is the *declared* size
    (``None`` = ``len(data)``). ``served_content_type`` is the Content-Type of the download (``None`` = the
    declared one). Tests may make all three lie about ``data``. ``id``/``url`` are assigned when the fake
    registers it.
    """

    filename: str
    data: bytes = field(default=b"", repr=False)
    content_type: str | None = None
    size: int | None = None
    description: str | None = None
    served_content_type: str | None = None
    width: int | None = None
    height: int | None = None
    id: int = 0
    url: str = ""
    ephemeral: bool = False
    #: multipart part content type the bot used when uploading (bot-posted files only)
    upload_content_type: str | None = None
    #: seconds the fake's CDN waits before serving the bytes (a slow download)
    serve_delay: float = 0.0
    #: signs ``url`` for a payload (set by the fake when it registers the attachment)
    signer: Callable[[str], str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.content_type is None:
            guessed, _ = mimetypes.guess_type(self.filename)
            self.content_type = guessed or "application/octet-stream"
        if self.size is None:
            self.size = len(self.data)
        if self.width is None and self.height is None and (self.content_type or "").startswith("image/"):
            self.width, self.height = _image_size(self.data)

    @property
    def spoiler(self) -> bool:
        return self.filename.startswith("SPOILER_")

    @property
    def signed_url(self) -> str:
        """The URL as a payload carries it: signed and valid from now for the fake's ``cdn_url_lifetime``."""
        return self.signer(self.url) if self.signer is not None else self.url

    def to_payload(self) -> dict[str, Any]:
        url = self.signed_url
        payload: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": url,
            "proxy_url": url + ("&" if "?" in url else "?") + "proxy=1",
        }
        if self.content_type:
            payload["content_type"] = self.content_type
        if self.description is not None:
            payload["description"] = self.description
        if self.width is not None and self.height is not None:
            payload["width"] = self.width
            payload["height"] = self.height
        if self.ephemeral:
            payload["ephemeral"] = True
        return payload


@dataclass(eq=False)
class FakeUser:
    id: int
    name: str
    bot: bool = False
    global_name: str | None = None

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass(eq=False)
class FakeRole:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0
    hoist: bool = False
    mentionable: bool = False
    managed: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": self.hoist,
            "managed": self.managed,
            "mentionable": self.mentionable,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if self.bot_id is not None:
            payload["tags"] = {"bot_id": str(self.bot_id)}
        return payload


@dataclass(eq=False)
class FakeChannel:
    id: int
    guild_id: int | None
    name: str
    type: int = 0  # 0 text, 1 DM, 2 voice, 4 category, 5 announcement
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    nsfw: bool = False
    #: permission overwrites as Discord payloads: {"id", "type" (0 role, 1 member), "allow", "deny"}
    overwrites: list[dict[str, Any]] = field(default_factory=list)
    recipients: list[FakeUser] = field(default_factory=list)
    last_message_id: int | None = None
    #: threads (types 10, 11, 12): who created it and who is in it
    owner_id: int | None = None
    thread_members: list[int] = field(default_factory=list)

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def set_overwrite(self, target_id: int, *, type: int, allow: int = 0, deny: int = 0) -> None:
        self.overwrites = [o for o in self.overwrites if int(o["id"]) != target_id]
        if allow or deny:
            self.overwrites.append(
                {"id": str(target_id), "type": type, "allow": str(allow), "deny": str(deny)}
            )

    def to_payload(self) -> dict[str, Any]:
        if self.type == 1:
            return {
                "id": str(self.id),
                "type": 1,
                "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                "recipients": [u.to_payload() for u in self.recipients],
                "flags": 0,
            }
        payload: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [dict(o) for o in self.overwrites],
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "nsfw": self.nsfw,
            "flags": 0,
        }
        if self.type in (0, 5):
            payload["topic"] = self.topic
            payload["rate_limit_per_user"] = 0
            payload["last_message_id"] = str(self.last_message_id) if self.last_message_id else None
        if self.type == 2:
            payload.update({"bitrate": 64000, "user_limit": 0, "rtc_region": None})
        if self.is_thread:
            del payload["position"], payload["permission_overwrites"]
            payload.update(
                {
                    "owner_id": str(self.owner_id or 0),
                    "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                    "rate_limit_per_user": 0,
                    "message_count": 0,
                    "member_count": len(self.thread_members),
                    "thread_metadata": {
                        "archived": False,
                        "auto_archive_duration": 1440,
                        "archive_timestamp": now_iso(),
                        "locked": False,
                        "invitable": False,
                    },
                }
            )
        return payload

    @property
    def is_thread(self) -> bool:
        return self.type in (10, 11, 12)


@dataclass(eq=False)
class FakeMember:
    """A guild member. ``permissions`` is the computed guild-level permission integer."""

    user: FakeUser
    guild: FakeGuild = field(repr=False)
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=now_iso)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def mention(self) -> str:
        return f"<@{self.user.id}>"

    @property
    def is_owner(self) -> bool:
        return self.guild.owner_id == self.user.id

    @property
    def roles(self) -> list[FakeRole]:
        return [self.guild.roles[r] for r in self.role_ids if r in self.guild.roles]

    @property
    def permissions(self) -> int:
        return self.guild.base_permissions(self)

    def has(self, permission: int) -> bool:
        perms = self.permissions
        return perms & ADMINISTRATOR != 0 or perms & permission == permission

    def to_payload(self, *, with_user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "roles": [str(r) for r in self.role_ids],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            payload["user"] = self.user.to_payload()
        if permissions is not None:
            payload["permissions"] = str(permissions)
        return payload


@dataclass(eq=False)
class FakeGuild:
    """A guild. Build it with :meth:`add_channel`, :meth:`add_role`, :meth:`add_member`."""

    fake: FakeState = field(repr=False)
    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    #: explicit per-file upload limit in bytes (``None`` = by premium tier)
    upload_limit_override: int | None = None
    preferred_locale: str = "en-US"
    features: list[str] = field(default_factory=list)
    roles: dict[int, FakeRole] = field(default_factory=dict, repr=False)
    channels: dict[int, FakeChannel] = field(default_factory=dict, repr=False)
    members: dict[int, FakeMember] = field(default_factory=dict, repr=False)
    joined_at: str = field(default_factory=now_iso)

    # -- builders ---------------------------------------------------------------------------------------
    @property
    def everyone(self) -> FakeRole:
        return self.roles[self.id]

    @property
    def bot_member(self) -> FakeMember:
        return self.members[self.fake.bot_user.id]

    @property
    def bot_role(self) -> FakeRole:
        return next(r for r in self.roles.values() if r.bot_id == self.fake.bot_user.id)

    @property
    def upload_limit(self) -> int:
        if self.upload_limit_override is not None:
            return self.upload_limit_override
        return UPLOAD_LIMIT_BY_TIER.get(self.premium_tier, 10 * MIB)

    def add_channel(
        self,
        name: str,
        *,
        type: int = 0,
        topic: str | None = None,
        parent_id: int | None = None,
        nsfw: bool = False,
    ) -> int:
        """Add a channel (text by default; ``type=4`` category, ``2`` voice). Returns its id."""
        cid = self.fake._ids.next()
        position = sum(1 for c in self.channels.values() if c.type == type)
        self.channels[cid] = FakeChannel(
            cid, self.id, name, type=type, position=position, topic=topic, parent_id=parent_id, nsfw=nsfw
        )
        self.fake._channel_index[cid] = self.channels[cid]
        return cid

    def add_thread(
        self, parent_id: int, name: str, *, private: bool = True, members: Sequence[FakeMember] = ()
    ) -> int:
        """Add an active thread under a text channel (``private``: type 12, seen only by its
        ``members`` and those with Manage Threads; else type 11). Returns its id."""
        tid = self.fake._ids.next()
        ids = [m.id for m in members]
        self.channels[tid] = FakeChannel(
            tid,
            self.id,
            name,
            type=12 if private else 11,
            parent_id=parent_id,
            owner_id=ids[0] if ids else self.fake.bot_user.id,
            thread_members=ids,
        )
        self.fake._channel_index[tid] = self.channels[tid]
        return tid

    def add_role(
        self,
        name: str,
        permissions: Any = 0,
        *,
        color: int = 0,
        hoist: bool = False,
        mentionable: bool = False,
    ) -> int:
        """Add a role with a permission integer (or ``discord.Permissions``). Returns its id."""
        rid = self.fake._ids.next()
        position = max((r.position for r in self.roles.values()), default=0) + 1
        self.roles[rid] = FakeRole(
            rid,
            self.id,
            name,
            _perm_value(permissions),
            position=position,
            color=color,
            hoist=hoist,
            mentionable=mentionable,
        )
        return rid

    def add_member(
        self,
        name: str,
        roles: Iterable[int | FakeRole] = (),
        permissions: Any = None,
        *,
        owner: bool = False,
        bot: bool = False,
        nick: str | None = None,
    ) -> FakeMember:
        """Add a member. ``permissions`` (int or ``discord.Permissions``) creates a personal role carrying
        them, so ``Member.guild_permissions`` computed by discord.py matches. ``owner=True`` makes them the
        guild owner (all permissions)."""
        user = FakeUser(self.fake._ids.next(), name, bot=bot)
        self.fake.users[user.id] = user
        role_ids = [r.id if isinstance(r, FakeRole) else int(r) for r in roles]
        if permissions is not None:
            role_ids.append(self.add_role(f"{name}-perms", permissions))
        member = FakeMember(user, self, role_ids, nick=nick)
        self.members[user.id] = member
        if owner:
            self.owner_id = user.id
        return member

    # -- lookups ----------------------------------------------------------------------------------------
    def channel(self, name_or_id: str | int) -> FakeChannel:
        for c in self.channels.values():
            if c.id == name_or_id or c.name == name_or_id:
                return c
        raise KeyError(name_or_id)

    def role(self, name_or_id: str | int) -> FakeRole:
        for r in self.roles.values():
            if r.id == name_or_id or r.name == name_or_id:
                return r
        raise KeyError(name_or_id)

    def member(self, name_or_id: str | int) -> FakeMember:
        for m in self.members.values():
            if m.id == name_or_id or m.name == name_or_id:
                return m
        raise KeyError(name_or_id)

    @property
    def owner(self) -> FakeMember:
        return self.members[self.owner_id]

    # -- permissions (Discord's algorithm) --------------------------------------------------------------
    def base_permissions(self, member: FakeMember) -> int:
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.everyone.permissions
        for role in member.roles:
            perms |= role.permissions
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return perms

    def channel_permissions(self, member: FakeMember, channel_id: int) -> int:
        base = self.base_permissions(member)
        if base & ADMINISTRATOR:
            return ALL_PERMISSIONS
        channel = self.channels.get(channel_id)
        if channel is None:
            return base
        if channel.is_thread and channel.parent_id is not None:  # threads take their parent's
            return self.channel_permissions(member, channel.parent_id)
        perms = base
        overwrites = {int(o["id"]): o for o in channel.overwrites}
        everyone = overwrites.get(self.id)
        if everyone:
            perms &= ~int(everyone["deny"])
            perms |= int(everyone["allow"])
        allow = deny = 0
        for rid in member.role_ids:
            ow = overwrites.get(rid)
            if ow and ow["type"] == 0:
                allow |= int(ow["allow"])
                deny |= int(ow["deny"])
        perms &= ~deny
        perms |= allow
        ow = overwrites.get(member.id)
        if ow and ow["type"] == 1:
            perms &= ~int(ow["deny"])
            perms |= int(ow["allow"])
        if not perms & VIEW_CHANNEL:
            return 0
        return perms

    # -- payloads ---------------------------------------------------------------------------------------
    def to_payload(self, *, all_members: bool = True) -> dict[str, Any]:
        """GUILD_CREATE payload. Without the GUILD_PRESENCES intent Discord only lists the bot itself in
        ``members`` (``all_members=False``); ``member_count`` is always the real count."""
        text_channels = [c for c in self.channels.values() if c.type == 0]
        listed = [m for m in self.members.values() if all_members or m.id == self.fake.bot_user.id]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": {0: 0, 1: 2, 2: 7, 3: 14}.get(self.premium_tier, 0),
            "premium_progress_bar_enabled": False,
            "preferred_locale": self.preferred_locale,
            "features": list(self.features),
            "system_channel_id": str(text_channels[0].id) if text_channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "application_id": None,
            "widget_enabled": False,
            "roles": [r.to_payload() for r in sorted(self.roles.values(), key=lambda r: r.position)],
            "emojis": [],
            "stickers": [],
            "channels": [c.to_payload() for c in self.channels.values() if not c.is_thread],
            "threads": [c.to_payload() for c in self.channels.values() if c.is_thread],
            "members": [m.to_payload() for m in listed],
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "joined_at": self.joined_at,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "lazy": True,
        }

    def interaction_guild_payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "locale": self.preferred_locale, "features": list(self.features)}


@dataclass(eq=False)
class FakeEdit:
    """One edit of a message: the JSON payload and the files uploaded with it."""

    payload: dict[str, Any]
    files: list[FakeAttachment]
    source: str  # "channel", "webhook", "callback" (type 7)


@dataclass(eq=False)
class FakeMessage:
    """A message stored by the fake. Mutated in place by edits; ``edits`` keeps each edit's payload."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    tts: bool = False
    nonce: str | int | None = None
    type: int = 0
    #: "channel" (bot REST post), "interaction" (callback type 4/5), "followup", "user" (built by a test)
    source: str = "channel"
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    interaction: FakeInteraction | None = field(default=None, repr=False)
    member: FakeMember | None = field(default=None, repr=False)
    #: the payload the message was created with (``payload_json`` for multipart)
    payload: dict[str, Any] = field(default_factory=dict, repr=False)
    edits: list[FakeEdit] = field(default_factory=list, repr=False)
    edited_timestamp: str | None = None
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & FLAG_LOADING)

    @property
    def timestamp(self) -> str:
        return iso_from_snowflake(self.id)

    @property
    def jump_url(self) -> str:
        return f"https://discord.com/channels/{self.guild_id or '@me'}/{self.channel_id}/{self.id}"

    def walk_components(self) -> Iterator[dict[str, Any]]:
        yield from walk_components(self.components)

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        return next((c for c in self.walk_components() if c.get("custom_id") == custom_id), None)

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in self.walk_components() if "custom_id" in c]

    def to_payload(self, resolve: Any = None, *, _depth: int = 0) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "channel_id": str(self.channel_id),
            "author": self.author.to_payload(),
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": self.tts,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.to_payload() for a in self.attachments],
            "embeds": [dict(e) for e in self.embeds],
            "components": [dict(c) for c in self.components],
            "pinned": False,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        if self.member is not None:
            payload["member"] = self.member.to_payload(with_user=False)
        if self.nonce is not None:
            payload["nonce"] = self.nonce
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            payload["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            payload["interaction_metadata"] = dict(self.interaction_metadata)
        if self.message_reference is not None:
            payload["message_reference"] = dict(self.message_reference)
            if resolve is not None and _depth == 0:
                ref = resolve(self.message_reference)
                if ref is not None and ref.channel_id == self.channel_id:
                    payload["referenced_message"] = ref.to_payload(resolve, _depth=1)
        return payload


def walk_components(components: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for comp in components:
        yield comp
        if isinstance(comp.get("components"), list):
            yield from walk_components(comp["components"])
        if isinstance(comp.get("component"), dict):
            yield from walk_components([comp["component"]])
        if isinstance(comp.get("accessory"), dict):
            yield from walk_components([comp["accessory"]])


@dataclass
class DefaultSetup:
    """What :meth:`FakeDiscord.setup_default` builds: one guild with typical people, roles and channels."""

    guild: FakeGuild
    owner: FakeMember
    admin: FakeMember  # role "Admin" with Manage Server
    moderator: FakeMember  # role "Moderator" with Manage Messages + Moderate Members
    alice: FakeMember  # plain member
    bob: FakeMember  # plain member
    admin_role: int
    moderator_role: int
    general: int  # channel ids
    images: int
    mod_log: int

    @property
    def guild_id(self) -> int:
        return self.guild.id

    @property
    def members(self) -> list[FakeMember]:
        return [self.owner, self.admin, self.moderator, self.alice, self.bob]
