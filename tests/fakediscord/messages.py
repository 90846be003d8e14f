"""Channel messages: the store (``fake.messages``, ``fake.message``, ``wait_message``), messages members
write (``user_message``), building and editing a message from a payload and its files (Discord's payload
rules and upload limits), MESSAGE_CREATE/UPDATE/DELETE echoes, and the REST routes: history, create (nonces,
replies), get, edit, delete, typing and reactions. Interaction responses (:mod:`.responses`) build their
messages here."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import validation
from .gateway import INTENT_DIRECT_MESSAGES, INTENT_GUILD_MESSAGES
from .models import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    UPLOAD_LIMIT_BY_TIER,
    FakeAttachment,
    FakeChannel,
    FakeEdit,
    FakeMember,
    FakeMessage,
    now_iso,
)
from .rest import HTTPError, RecordedFile, RecordedRequest, Route, json_response, route, snow

if TYPE_CHECKING:
    from .cdn import Cdn
    from .channels import Channels
    from .gateway import Gateway
    from .state import FakeState

MAX_REQUEST_BYTES = 25 * 1024 * 1024  # "The maximum request size when sending a message is 25 MiB"


class Messages:
    def __init__(self, state: FakeState, gateway: Gateway, cdn: Cdn, channels: Channels) -> None:
        self.state = state
        self.gateway = gateway
        self.cdn = cdn
        self.channels = channels
        self.by_id: dict[int, FakeMessage] = {}
        self.by_channel: dict[int, list[FakeMessage]] = {}
        self._nonces: dict[tuple[int, int, str], tuple[float, FakeMessage]] = {}

    def routes(self) -> list[Route]:
        ch = r"/channels/" + snow("cid")
        one = ch + r"/messages/" + snow("mid")
        return [
            route("GET", ch + r"/messages", self._h_history),
            route("POST", ch + r"/messages", self._h_message_create),
            route("GET", one, self._h_message_get),
            route("PATCH", one, self._h_message_patch),
            route("DELETE", one, self._h_message_delete),
            route("POST", ch + r"/typing", self._h_typing),
            route("PUT", one + r"/reactions/(?P<emoji>[^/]+)/@me", self._h_reaction),
            route("DELETE", one + r"/reactions/(?P<emoji>[^/]+)/@me", self._h_reaction),
        ]

    def messages(
        self,
        channel_id: int,
        *,
        source: str | Iterable[str] | None = None,
        include_ephemeral: bool = False,
        include_deleted: bool = False,
    ) -> list[FakeMessage]:
        """Messages in a channel, oldest first. ``source``: "channel" (bot posts), "interaction", "followup",
        "user" (or several); default all."""
        sources = {source} if isinstance(source, str) else set(source) if source is not None else None
        return [
            m
            for m in self.by_channel.get(channel_id, [])
            if (include_ephemeral or not m.ephemeral)
            and (include_deleted or not m.deleted)
            and (sources is None or m.source in sources)
        ]

    def message(self, message_id: int) -> FakeMessage:
        return self.by_id[message_id]

    async def wait_message(
        self,
        channel_id: int,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 5.0,
        *,
        source: str | Iterable[str] | None = "channel",
        after: int | FakeMessage | None = None,
    ) -> FakeMessage:
        """The first message in ``channel_id`` (by default: posted by the bot with ``POST …/messages``)
        matching ``predicate``, already there or yet to come; ``after`` skips messages up to that id."""
        after_id = after.id if isinstance(after, FakeMessage) else (after or 0)

        def check() -> FakeMessage | None:
            for m in self.messages(channel_id, source=source, include_ephemeral=True):
                if m.id > after_id and (predicate is None or predicate(m)):
                    return m
            return None

        return await self.state.wait_for(check, timeout, what=f"a message in channel {channel_id}")

    async def user_message(
        self,
        channel_id: int,
        member: FakeMember,
        content: str = "",
        *,
        attachments: Sequence[FakeAttachment] = (),
        embeds: Sequence[dict[str, Any]] = (),
        dispatch: bool = True,
    ) -> FakeMessage:
        """A message written by a (human) member, stored in the channel (usable as a context-menu target or as
        a reference); MESSAGE_CREATE is dispatched when ``dispatch`` and the bot's intents want it."""
        for a in attachments:
            self.cdn.register_attachment(a)
        channel = self.state._channel_index[channel_id]
        msg = FakeMessage(
            self.state._ids.next(),
            channel_id,
            channel.guild_id,
            member.user,
            content=content,
            embeds=list(embeds),
            attachments=list(attachments),
            source="user",
            member=member,
        )
        await self.store_message(msg, dispatch=dispatch)
        return msg

    def resolve_reference(self, ref: dict[str, Any]) -> FakeMessage | None:
        mid = ref.get("message_id")
        msg = self.by_id.get(int(mid)) if mid else None
        return None if msg is None or msg.deleted else msg

    async def store_message(self, msg: FakeMessage, *, dispatch: bool = True) -> None:
        self.by_id[msg.id] = msg
        self.by_channel.setdefault(msg.channel_id, []).append(msg)
        channel = self.state._channel_index.get(msg.channel_id)
        if channel is not None:
            channel.last_message_id = msg.id
        if dispatch and self.state.echo_message_events and not msg.ephemeral:
            intent = INTENT_GUILD_MESSAGES if msg.guild_id else INTENT_DIRECT_MESSAGES
            await self.gateway.dispatch_guild_event(
                msg.guild_id, "MESSAGE_CREATE", msg.to_payload(self.resolve_reference), intent=intent
            )
        self.state._notify()

    async def echo_update(self, msg: FakeMessage) -> None:
        if self.state.echo_message_events and not msg.ephemeral:
            intent = INTENT_GUILD_MESSAGES if msg.guild_id else INTENT_DIRECT_MESSAGES
            await self.gateway.dispatch_guild_event(
                msg.guild_id, "MESSAGE_UPDATE", msg.to_payload(self.resolve_reference), intent=intent
            )

    async def echo_delete(self, msg: FakeMessage) -> None:
        if self.state.echo_message_events and not msg.ephemeral:
            data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id:
                data["guild_id"] = str(msg.guild_id)
            intent = INTENT_GUILD_MESSAGES if msg.guild_id else INTENT_DIRECT_MESSAGES
            await self.gateway.dispatch_guild_event(msg.guild_id, "MESSAGE_DELETE", data, intent=intent)

    def message_from_payload(
        self,
        payload: dict[str, Any],
        files: list[RecordedFile],
        channel_id: int,
        guild_id: int | None,
        *,
        flags_mask: int,
        source: str,
    ) -> FakeMessage:
        self._check_payload(payload, files, guild_id, create=True)
        attachments = self._build_attachments(payload, files, None)
        return FakeMessage(
            self.state._ids.next(),
            channel_id,
            guild_id,
            self.state.bot_user,
            content=payload.get("content") or "",
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            attachments=attachments,
            flags=int(payload.get("flags") or 0) & flags_mask,
            allowed_mentions=payload.get("allowed_mentions"),
            tts=bool(payload.get("tts")),
            nonce=payload.get("nonce"),
            source=source,
            payload=payload,
        )

    def apply_edit(
        self, msg: FakeMessage, payload: dict[str, Any], files: list[RecordedFile], source: str
    ) -> None:
        self._check_payload(payload, files, msg.guild_id, create=False)
        new_attachments = self._build_attachments(payload, files, msg.attachments)
        if "content" in payload:
            msg.content = payload["content"] or ""
        if "embeds" in payload:
            msg.embeds = list(payload["embeds"] or [])
        if "components" in payload:
            msg.components = list(payload["components"] or [])
        if "allowed_mentions" in payload:
            msg.allowed_mentions = payload["allowed_mentions"]
        if payload.get("flags") is not None:
            keep = msg.flags & (FLAG_EPHEMERAL | FLAG_SUPPRESS_NOTIFICATIONS)
            msg.flags = keep | (int(payload["flags"]) & ~(FLAG_EPHEMERAL | FLAG_LOADING))
        msg.flags &= ~FLAG_LOADING
        msg.attachments = new_attachments
        msg.edited_timestamp = now_iso()
        attached = [a for a in new_attachments if any(a.data is f.data for f in files)]
        msg.edits.append(FakeEdit(payload, attached, source))

    def _upload_limit(self, guild_id: int | None) -> int:
        guild = self.state.guilds.get(guild_id) if guild_id else None
        return guild.upload_limit if guild else UPLOAD_LIMIT_BY_TIER[0]

    def _check_payload(
        self, payload: dict[str, Any], files: list[RecordedFile], guild_id: int | None, *, create: bool
    ) -> None:
        """Discord's rules for a message payload (400 with its code) and its upload limits (413)."""
        error = validation.check_message(payload, len(files), create=create)
        if error is not None:
            raise HTTPError(
                400,
                error["code"],
                error["message"],
                **{k: v for k, v in error.items() if k not in ("code", "message")},
            )
        self._check_files(files, guild_id)

    def _check_files(self, files: list[RecordedFile], guild_id: int | None) -> None:
        """Discord's upload limits: each file at most the guild's limit by boost tier (what interactions carry
        as ``attachment_size_limit``), all files of one request together at most 25 MiB."""
        limit = self._upload_limit(guild_id)
        if any(len(f.data) > limit for f in files) or sum(len(f.data) for f in files) > MAX_REQUEST_BYTES:
            raise HTTPError(413, 40005, "Request entity too large")

    def _new_attachment(self, f: RecordedFile, entry: dict[str, Any] | None) -> FakeAttachment:
        entry = entry or {}
        att = FakeAttachment(
            filename=entry.get("filename") or f.filename or "unknown",
            data=f.data,
            description=entry.get("description"),
            upload_content_type=f.content_type,
        )
        return self.cdn.register_attachment(att)

    def _build_attachments(
        self, payload: dict[str, Any], files: list[RecordedFile], existing: list[FakeAttachment] | None
    ) -> list[FakeAttachment]:
        """The message's attachments after a create (``existing`` None) or an edit."""
        by_index = {f.index: f for f in files if f.index >= 0}
        entries = payload.get("attachments")
        if entries is None:
            return list(existing or []) + [self._new_attachment(f, None) for f in files]
        result: list[FakeAttachment] = []
        used: set[int] = set()
        for entry in entries:
            aid = int(entry["id"])
            ex = next((a for a in existing or [] if a.id == aid), None)
            if ex is not None:
                result.append(ex)
                continue
            f = by_index.get(aid)
            if f is None:
                raise HTTPError(
                    400,
                    50035,
                    "Invalid Form Body",
                    errors={
                        "attachments": {
                            "_errors": [
                                {
                                    "code": "ATTACHMENT_NOT_FOUND",
                                    "message": f"Attachment data not found for id {aid}",
                                }
                            ]
                        }
                    },
                )
            used.add(aid)
            result.append(self._new_attachment(f, entry))
        result.extend(self._new_attachment(f, None) for i, f in by_index.items() if i not in used)
        return result

    def _message_for(self, channel: FakeChannel, m: re.Match[str]) -> FakeMessage:
        msg = self.by_id.get(int(m["mid"]))
        if msg is None or msg.deleted or msg.channel_id != channel.id or msg.ephemeral:
            raise HTTPError(404, 10008, "Unknown Message")
        return msg

    async def _h_history(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self.channels.channel_for(m)
        self.channels.require(channel, 0)
        perms = self.channels.bot_permissions(channel)
        if perms is not None and not perms & READ_MESSAGE_HISTORY:
            return json_response([])  # "If the current user is missing READ_MESSAGE_HISTORY … no messages"
        msgs = self.messages(channel.id)
        limit = min(int(rec.query.get("limit", 50)), 100)
        if "before" in rec.query:
            msgs = [x for x in msgs if x.id < int(rec.query["before"])]
        if "after" in rec.query:
            msgs = [x for x in msgs if x.id > int(rec.query["after"])][:limit]
        if "around" in rec.query:
            around = int(rec.query["around"])
            older = [x for x in msgs if x.id <= around][-(limit // 2 + 1) :]
            newer = [x for x in msgs if x.id > around][: limit - len(older)]
            msgs = older + newer
        msgs = msgs[-limit:]
        return json_response([x.to_payload(self.resolve_reference) for x in reversed(msgs)])

    async def _h_message_create(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self.channels.channel_for(m)
        if channel.id in self.channels.send_denied:
            raise HTTPError(403, 50013, "Missing Permissions")
        payload = rec.json if isinstance(rec.json, dict) else {}
        self.channels.require(channel, self.channels.posting_needs(payload, rec.files, create=True))
        nonce = payload.get("nonce")
        nonce_key = (channel.id, self.state.bot_user.id, str(nonce))
        if nonce is not None and payload.get("enforce_nonce"):
            earlier = self._nonces.get(nonce_key)
            if earlier is not None and time.monotonic() - earlier[0] <= self.state.nonce_window:
                return json_response(earlier[1].to_payload(self.resolve_reference))
        ref = payload.get("message_reference")
        msg = self.message_from_payload(
            payload,
            rec.files,
            channel.id,
            channel.guild_id,
            flags_mask=FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | (1 << 15),
            source="channel",
        )
        if ref:
            target = self.resolve_reference(ref)
            if target is None and ref.get("fail_if_not_exists", True):
                raise HTTPError(
                    400,
                    50035,
                    "Invalid Form Body",
                    errors={
                        "message_reference": {
                            "_errors": [
                                {"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}
                            ]
                        }
                    },
                )
            if target is not None:
                msg.message_reference = {
                    "type": ref.get("type", 0),
                    "message_id": str(target.id),
                    "channel_id": str(target.channel_id),
                    **({"guild_id": str(target.guild_id)} if target.guild_id else {}),
                }
                msg.type = 19
        if nonce is not None and payload.get("enforce_nonce"):
            self._nonces[nonce_key] = (time.monotonic(), msg)
        await self.store_message(msg)
        return json_response(msg.to_payload(self.resolve_reference))

    async def _h_message_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self.channels.channel_for(m)
        self.channels.require(channel, READ_MESSAGE_HISTORY)
        return json_response(self._message_for(channel, m).to_payload(self.resolve_reference))

    async def _h_message_patch(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self.channels.channel_for(m)
        msg = self._message_for(channel, m)
        if msg.author.id != self.state.bot_user.id:
            raise HTTPError(403, 50005, "Cannot edit a message authored by another user")
        payload = rec.json if isinstance(rec.json, dict) else {}
        self.channels.require(channel, self.channels.posting_needs(payload, rec.files, create=False))
        self.apply_edit(msg, rec.json if isinstance(rec.json, dict) else {}, rec.files, "channel")
        await self.echo_update(msg)
        self.state._notify()
        return json_response(msg.to_payload(self.resolve_reference))

    async def _h_message_delete(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        channel = self.channels.channel_for(m)
        msg = self._message_for(channel, m)
        if msg.author.id != self.state.bot_user.id and channel.guild_id is not None:
            guild = self.state.guilds[channel.guild_id]
            if not guild.channel_permissions(guild.bot_member, channel.id) & MANAGE_MESSAGES:
                raise HTTPError(403, 50013, "Missing Permissions")
        msg.deleted = True
        await self.echo_delete(msg)
        return web.Response(status=204)

    async def _h_typing(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        self.channels.channel_for(m)
        return web.Response(status=204)

    async def _h_reaction(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        self._message_for(self.channels.channel_for(m), m)
        return web.Response(status=204)
