"""The fake's attachment CDN: attachment URLs signed as Discord signs them (``ex``/``is``/``hm``), valid
``fake.cdn_url_lifetime`` seconds from each payload that carries them (404 after), serving the bytes, and
``POST /attachments/refresh-urls`` for expired links."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from .models import FakeAttachment
from .rest import HTTPError, RecordedRequest, Route, json_response, route

if TYPE_CHECKING:
    from .state import FakeState


class Cdn:
    def __init__(self, state: FakeState) -> None:
        self.state = state
        self._attachments: dict[int, FakeAttachment] = {}
        self._cdn_secret = secrets.token_bytes(16)
        self._cdn_epoch = 0

    def routes(self) -> list[Route]:
        return [route("POST", r"/attachments/refresh-urls", self._h_refresh_urls)]

    def register_attachment(self, attachment: FakeAttachment) -> FakeAttachment:
        """Give ``attachment`` an id and a download URL on the fake (done automatically when used)."""
        if not attachment.id:
            attachment.id = self.state._ids.next()
        if not attachment.url:
            from urllib.parse import quote

            attachment.url = f"{self.state.url}/attachments/{attachment.id}/{quote(attachment.filename)}"
        attachment.signer = self.signed_url
        self._attachments[attachment.id] = attachment
        return attachment

    def signed_url(self, url: str | FakeAttachment) -> str:
        """A CDN URL signed as Discord signs them (``ex`` expiry, ``is`` issue time, ``hm`` signature),
        valid for ``cdn_url_lifetime`` seconds from now. Every payload the fake sends carries fresh ones."""
        base = url.url if isinstance(url, FakeAttachment) else url.split("?", 1)[0]
        issued = int(time.time())
        expires = issued + max(0, math.ceil(self.state.cdn_url_lifetime))
        return f"{base}?ex={expires:08x}&is={issued:08x}&hm={self._cdn_signature(base, expires, issued)}&"

    def _cdn_signature(self, base: str, expires: int, issued: int) -> str:
        path = base.split("/attachments/", 1)[-1]
        signed = f"{self._cdn_epoch}:{path}:{expires}:{issued}".encode()
        return hmac.new(self._cdn_secret, signed, hashlib.sha256).hexdigest()

    def expire_cdn_urls(self) -> None:
        """Every attachment URL issued so far stops working now, as if its ``ex`` had passed (no waiting);
        payloads sent from now on (a fetched message, an interaction) carry fresh ones."""
        self._cdn_epoch += 1

    def _cdn_url_valid(self, base: str, query: Mapping[str, str]) -> bool:
        try:
            expires, issued = int(query["ex"], 16), int(query["is"], 16)
        except (KeyError, ValueError):
            return False
        expected = self._cdn_signature(base, expires, issued)
        return hmac.compare_digest(expected, query.get("hm", "")) and time.time() < expires

    async def _h_refresh_urls(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        """``POST /attachments/refresh-urls``: fresh signed URLs for attachments the fake knows (Discord's
        endpoint for expired CDN links; not in the OpenAPI spec, so a bot using it fails the spec rule)."""
        urls = (rec.json or {}).get("attachment_urls") if isinstance(rec.json, dict) else None
        if not isinstance(urls, list) or not urls or len(urls) > 50:
            raise HTTPError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "attachment_urls": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "Bad list"}]}
                },
            )
        refreshed = []
        for url in urls:
            found = re.search(r"/attachments/(\d+)/", str(url))
            att = self._attachments.get(int(found[1])) if found else None
            if att is not None:
                refreshed.append({"original": url, "refreshed": self.signed_url(att)})
        return json_response({"refreshed_urls": refreshed})

    async def serve(self, aid: int, rec: RecordedRequest) -> web.Response:
        att = self._attachments.get(aid)
        if att is None:
            return web.Response(status=404, text="Not Found")
        if not self._cdn_url_valid(att.url, rec.query):
            return web.Response(status=404, text="This content is no longer available.")
        if att.serve_delay:
            await asyncio.sleep(att.serve_delay)
        ctype = att.served_content_type or att.content_type or "application/octet-stream"
        return web.Response(body=att.data, headers={"Content-Type": ctype})
