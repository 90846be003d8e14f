"""Interaction responses: the bot's callback (``POST /interactions/{id}/{token}/callback``: the 3-second rule,
one acknowledgement, a type that fits the interaction), then, through the interaction's webhook token
(valid 15 minutes), the original response (``@original``: get, edit, delete) and followup messages.
Discord does not check the bot's channel permissions on these, and neither does the fake."""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import validation
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    CB_AUTOCOMPLETE,
    CB_DEFERRED_MESSAGE,
    CB_DEFERRED_UPDATE,
    CB_MESSAGE,
    CB_MODAL,
    CB_UPDATE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    FakeCallback,
    FakeInteraction,
)
from .models import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    FakeMessage,
    snowflake_time,
)
from .rest import APP, HTTPError, RecordedRequest, Route, json_response, route, snow, truthy

if TYPE_CHECKING:
    from .messages import Messages
    from .state import FakeState


def _invalid_response_type() -> HTTPError:
    """Discord's answer to a callback type that does not fit the interaction."""
    error = {"code": "INTERACTION_RESPONSE_TYPE_INVALID", "message": "Invalid interaction response type"}
    return HTTPError(400, 50035, "Invalid Form Body", errors={"type": {"_errors": [error]}})


class Responses:
    def __init__(self, state: FakeState, messages: Messages) -> None:
        self.state = state
        self.messages = messages

    def routes(self) -> list[Route]:
        wh = r"/webhooks/" + APP + r"/(?P<token>[^/]+)"
        one = wh + r"/messages/(?P<mid>@original|\d+)"
        return [
            route("POST", r"/interactions/" + snow("iid") + r"/(?P<token>[^/]+)/callback", self._h_callback),
            route("POST", wh, self._h_followup),
            route("GET", one, self._h_webhook_get),
            route("PATCH", one, self._h_webhook_patch),
            route("DELETE", one, self._h_webhook_delete),
        ]

    async def _h_callback(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        loop = asyncio.get_running_loop()
        it = self.state._interactions_by_token.get(m["token"])
        payload = rec.json if isinstance(rec.json, dict) else {}
        cb_type = int(payload.get("type") or 0)
        data = payload.get("data") or {}
        with_response = truthy(rec.query.get("with_response"))
        if it is None or it.id != int(m["iid"]):
            raise HTTPError(404, 10062, "Unknown interaction")
        record = FakeCallback(cb_type, data, [], 0, with_response=with_response)
        try:
            response = await self._callback(it, record, rec, loop.time())
        except HTTPError as exc:
            record.status = exc.status
            record.error = exc.body
            it.callback_attempts.append(record)
            raise
        record.status = response.status
        it.callback_attempts.append(record)
        return response

    async def _callback(
        self, it: FakeInteraction, record: FakeCallback, rec: RecordedRequest, now: float
    ) -> web.Response:
        if it.acked:
            raise HTTPError(400, 40060, "Interaction has already been acknowledged.")
        if it.dead or it.expired or now - it.created_at > self.state.interaction_deadline:
            it.dead = True
            raise HTTPError(404, 10062, "Unknown interaction")
        cb_type, data, files = record.type, record.data, rec.files
        component_like = it.type in (MESSAGE_COMPONENT, MODAL_SUBMIT) and it.source_message is not None
        msg: FakeMessage | None = None
        if cb_type in (CB_MESSAGE, CB_DEFERRED_MESSAGE):
            if it.type == AUTOCOMPLETE:
                raise _invalid_response_type()
            flags = int(data.get("flags") or 0)
            if cb_type == CB_MESSAGE:
                msg = self.messages.message_from_payload(
                    data,
                    files,
                    it.channel_id,
                    it.guild_id,
                    flags_mask=FLAG_EPHEMERAL
                    | FLAG_SUPPRESS_EMBEDS
                    | FLAG_SUPPRESS_NOTIFICATIONS
                    | (1 << 15),
                    source="interaction",
                )
            else:
                msg = FakeMessage(
                    self.state._ids.next(),
                    it.channel_id,
                    it.guild_id,
                    self.state.bot_user,
                    flags=FLAG_LOADING | (flags & FLAG_EPHEMERAL),
                    source="interaction",
                    payload=data,
                )
            self._decorate_interaction_message(msg, it)
            it.original_message = msg
            record.attachments = list(msg.attachments)
            await self.messages.store_message(msg)
        elif cb_type in (CB_DEFERRED_UPDATE, CB_UPDATE):
            if not component_like:
                raise _invalid_response_type()
            assert it.source_message is not None
            msg = self.messages.by_id.get(it.source_message.id, it.source_message)
            if cb_type == CB_UPDATE:
                self.messages.apply_edit(msg, data, files, "callback")
                record.attachments = list(msg.edits[-1].files)
                await self.messages.echo_update(msg)
            it.original_message = msg
        elif cb_type == CB_AUTOCOMPLETE:
            if it.type != AUTOCOMPLETE:
                raise _invalid_response_type()
            error = validation.check_choices(list(data.get("choices") or []))
            if error is not None:
                raise HTTPError(400, 50035, "Invalid Form Body", errors=error["errors"])
        elif cb_type == CB_MODAL:
            if it.type in (AUTOCOMPLETE, MODAL_SUBMIT):
                raise _invalid_response_type()
            error = validation.check_modal(data)
            if error is not None:
                raise HTTPError(400, 50035, "Invalid Form Body", errors=error["errors"])
        else:
            raise HTTPError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "type": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_CHOICES",
                                "message": "Value must be one of (1, 4, 5, 6, 7, 8, 9, 10, 12).",
                            }
                        ]
                    }
                },
            )
        it.acked = True
        it.callback_record = record
        self.state._notify()
        if not record.with_response:
            return web.Response(status=204)
        body: dict[str, Any] = {
            "interaction": {
                "id": str(it.id),
                "type": it.type,
                "response_message_loading": cb_type == CB_DEFERRED_MESSAGE,
                "response_message_ephemeral": bool(msg and msg.ephemeral),
            }
        }
        if msg is not None:
            body["interaction"]["response_message_id"] = str(msg.id)
        if cb_type in (CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_UPDATE) and msg is not None:
            body["resource"] = {"type": cb_type, "message": msg.to_payload(self.messages.resolve_reference)}
        else:
            body["resource"] = {"type": cb_type}
        return json_response(body)

    def _decorate_interaction_message(self, msg: FakeMessage, it: FakeInteraction) -> None:
        msg.webhook_id = self.state.application_id
        msg.application_id = self.state.application_id
        msg.interaction = it
        data = it.data
        if it.type == APPLICATION_COMMAND:
            msg.type = 20 if int(data.get("type", 1)) == 1 else 23
        meta: dict[str, Any] = {
            "id": str(it.id),
            "type": it.type,
            "user": it.member.user.to_payload(),
            "authorizing_integration_owners": dict(
                it.payload.get("authorizing_integration_owners") or {"0": str(it.guild_id)}
            ),
        }
        if it.type == APPLICATION_COMMAND:
            meta["name"] = it.name
            meta["command_type"] = int(data.get("type", 1))
        if it.source_message is not None:
            meta["interacted_message_id"] = str(it.source_message.id)
        if it.original_message is not None and it.original_message is not msg:
            meta["original_response_message_id"] = str(it.original_message.id)
        msg.interaction_metadata = meta

    def _webhook_interaction(self, m: re.Match[str]) -> FakeInteraction:
        if int(m["app"]) != self.state.application_id:
            raise HTTPError(404, 10015, "Unknown Webhook")
        it = self.state._interactions_by_token.get(m["token"])
        if it is None:
            raise HTTPError(401, 50027, "Invalid Webhook Token")
        # The token lives 15 minutes from the interaction's creation (its snowflake), not from its delivery.
        age = time.time() - snowflake_time(it.id).timestamp()
        if it.expired or age > self.state.interaction_ttl:
            raise HTTPError(401, 50027, "Invalid Webhook Token")
        if it.dead or not it.acked:
            raise HTTPError(404, 10015, "Unknown Webhook")
        return it

    def _webhook_message(self, it: FakeInteraction, mid: str) -> FakeMessage:
        if mid == "@original":
            msg = it.original_message
            if msg is None or msg.deleted or it.original_deleted:
                raise HTTPError(404, 10008, "Unknown Message")
            return msg
        target = int(mid)
        for msg in [it.original_message, *it.followups]:
            if msg is not None and msg.id == target and not msg.deleted:
                return msg
        raise HTTPError(404, 10008, "Unknown Message")

    async def _h_followup(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        it = self._webhook_interaction(m)
        payload = rec.json if isinstance(rec.json, dict) else {}
        original = it.original_message
        if (
            original is not None
            and original.loading
            and not original.deleted
            and not it.original_deleted
            and not it.edits
            and not it.followups
        ):
            # Discord: the first followup after a "thinking" defer replaces the loading message.
            self.messages.apply_edit(original, payload, rec.files, "webhook")
            it.followups.append(original)
            await self.messages.echo_update(original)
            msg = original
        else:
            msg = self.messages.message_from_payload(
                payload,
                rec.files,
                it.channel_id,
                it.guild_id,
                flags_mask=FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | (1 << 15),
                source="followup",
            )
            self._decorate_interaction_message(msg, it)
            it.followups.append(msg)
            await self.messages.store_message(msg)
        self.state._notify()
        if not truthy(rec.query.get("wait")):
            return web.Response(status=204)
        return json_response(msg.to_payload(self.messages.resolve_reference))

    async def _h_webhook_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        it = self._webhook_interaction(m)
        return json_response(self._webhook_message(it, m["mid"]).to_payload(self.messages.resolve_reference))

    async def _h_webhook_patch(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        it = self._webhook_interaction(m)
        msg = self._webhook_message(it, m["mid"])
        payload = rec.json if isinstance(rec.json, dict) else {}
        self.messages.apply_edit(msg, payload, rec.files, "webhook")
        if msg is it.original_message:
            it.edits.append(payload)
        await self.messages.echo_update(msg)
        self.state._notify()
        return json_response(msg.to_payload(self.messages.resolve_reference))

    async def _h_webhook_delete(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        it = self._webhook_interaction(m)
        msg = self._webhook_message(it, m["mid"])
        msg.deleted = True
        if msg is it.original_message:
            it.original_deleted = True
        await self.messages.echo_delete(msg)
        self.state._notify()
        return web.Response(status=204)
