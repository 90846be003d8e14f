"""Hub clients per server key, over one shared aiohttp session (cheap to create).

A server's client uses its own key (`KeyVault`, or the operator's fallback key), a job's client the
key that pays for it (`for_job`: a member's own key when the job says so); the model list
uses no key; image URLs from the hub's answers are untrusted and fetched by `downloader()`
over their own session, whose resolver refuses non-public addresses (`bot.hub.netguard`),
never over the API's.
"""

from __future__ import annotations

import logging

import aiohttp

from bot.hub import HubClient, HubModel
from bot.hub.netguard import AddressPolicy
from bot.jobs import Job
from bot.keys import KeyUnreadable, KeyVault, PersonalKeyUnreadable
from bot.logs import kv
from bot.timings import Timings

log = logging.getLogger(__name__)


class HubClients:
    """See the module docstring. Every client gets the hub timings (timeout, retries, backoff)."""

    def __init__(
        self,
        base_url: str,
        keys: KeyVault,
        session: aiohttp.ClientSession,
        *,
        timings: Timings,
        images_session: aiohttp.ClientSession | None = None,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        self.base_url = base_url
        self.keys = keys
        self.session = session
        self.images_session = images_session or session
        self.address_policy = address_policy or AddressPolicy()
        self.timeout = timings.hub_timeout
        self.retries = timings.hub_retries
        self.backoff = timings.hub_backoff

    def _client(self, key: str | None) -> HubClient:
        return HubClient(
            self.base_url,
            key,
            session=self.session,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
        )

    async def for_guild(self, guild_id: int) -> HubClient | None:
        try:
            key = await self.keys.get_key(guild_id)
        except KeyUnreadable:
            log.error(kv("keys.unreadable", guild=guild_id))
            return None
        if key is None:
            return None
        return self._client(key)

    async def for_job(self, job: Job) -> HubClient | None:
        """The client with the key that pays for `job` — for its submission, every poll, and after
        a restart: the member's own key (`key_owner`), else the server's. None without one."""
        if job.key_owner is None:
            return await self.for_guild(job.guild_id)
        try:
            key = await self.keys.get_personal_key(job.key_owner)
        except PersonalKeyUnreadable:
            log.error(kv("keys.personal_unreadable", job=job.id))
            return None
        return self._client(key) if key is not None else None

    def with_key(self, key: str) -> HubClient:
        return self._client(key)

    def anonymous(self) -> HubClient:
        """A client without a key, for the hub's own public API (the model list)."""
        return self._client(None)

    def downloader(self) -> HubClient:
        """A client for image URLs from the hub's answers: guarded session and address policy."""
        return HubClient(
            self.base_url,
            None,
            session=self.images_session,
            timeout=self.timeout,
            address_policy=self.address_policy,
        )

    async def list_models(self) -> list[HubModel]:
        return await self.anonymous().list_models()
