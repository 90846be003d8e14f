"""Everything the bot needs that is not Discord, opened and closed together.

The Discord client receives one `Services` and never builds a store or a hub client itself,
which is what lets tests and benchmarks run the real bot against other databases and hubs.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass

import aiohttp

from bot.alerts import BalanceWatcher, WatchedHubClient
from bot.catalog import ModelCatalog
from bot.config import Settings
from bot.db import Database
from bot.guild_settings import GuildSettingsStore
from bot.hub import HubClient, HubModel
from bot.hub.netguard import AddressPolicy, GuardedResolver, parse_allowed
from bot.imagine import Attachment, ImagineService, ReferenceCache
from bot.job_store import JobStore
from bot.keys import KeyUnreadable, KeyVault
from bot.logs import kv
from bot.queue import JobQueue
from bot.quotas import QuotaService
from bot.timings import Timings

log = logging.getLogger(__name__)


class HubClients:
    """Hub clients per server key over one shared aiohttp session (cheap to create).

    `timeout`, `retries` and `backoff` are passed to every `HubClient` (tests shorten them).
    """

    watcher: BalanceWatcher | None = None

    def __init__(
        self,
        base_url: str,
        keys: KeyVault,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        images_session: aiohttp.ClientSession | None = None,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        self.base_url = base_url
        self.keys = keys
        self.session = session
        # Image URLs from the hub's answers are untrusted: fetched over their own session whose
        # resolver refuses non-public addresses (`bot.hub.netguard`), never over the API's.
        self.images_session = images_session or session
        self.address_policy = address_policy or AddressPolicy()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

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
        client = self._client(key)
        if self.watcher is not None:  # balances that come back feed the low-balance alert
            client = WatchedHubClient.wrap(client, guild_id=guild_id, watcher=self.watcher)
        return client

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


@dataclass
class Services:
    settings: Settings
    timings: Timings
    db: Database
    session: aiohttp.ClientSession
    keys: KeyVault
    guilds: GuildSettingsStore
    quotas: QuotaService
    jobs: JobStore
    hubs: HubClients
    catalog: ModelCatalog
    references: ReferenceCache
    imagine: ImagineService
    owner: str
    queue: JobQueue
    balance: BalanceWatcher
    images_session: aiohttp.ClientSession
    address_policy: AddressPolicy

    async def fetch_attachment(self, attachment: Attachment) -> bytes:
        """Download a Discord attachment (the only member-supplied URL the bot fetches)."""
        return await fetch_capped(self.session, attachment.url, self.timings)

    @classmethod
    async def open(cls, settings: Settings, *, timings: Timings | None = None) -> Services:
        """Every service for `settings`; `timings` default to production's (tests pass shorter ones)."""
        timings = timings or Timings.from_settings(settings)
        db = await Database.open(settings.database_url)
        session = aiohttp.ClientSession()
        address_policy = AddressPolicy(parse_allowed(settings.allow_private_image_hosts))
        images_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(address_policy))
        )
        fallback = settings.hub_api_key.get_secret_value() if settings.hub_api_key else None
        keys = KeyVault(db, settings.fernet, fallback)
        guilds = GuildSettingsStore(db)
        quotas = QuotaService(db)
        jobs = JobStore(db)
        hubs = HubClients(
            settings.hub_base_url,
            keys,
            session,
            timeout=timings.hub_timeout,
            retries=timings.hub_retries,
            backoff=timings.hub_backoff,
            images_session=images_session,
            address_policy=address_policy,
        )
        balance = BalanceWatcher(guilds)
        hubs.watcher = balance
        queue = JobQueue(db, jobs, guilds)
        catalog = ModelCatalog(hubs.list_models)

        async def fetch_attachment(attachment: Attachment) -> bytes:
            return await fetch_capped(session, attachment.url, timings)

        references = ReferenceCache(fetch_attachment)
        imagine = ImagineService(
            settings=guilds,
            catalog=catalog,
            keys=keys,
            quotas=quotas,
            jobs=jobs,
            reference_cache=references,
            queue=queue,
        )
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        return cls(
            settings=settings,
            timings=timings,
            db=db,
            session=session,
            keys=keys,
            guilds=guilds,
            quotas=quotas,
            jobs=jobs,
            hubs=hubs,
            catalog=catalog,
            references=references,
            imagine=imagine,
            owner=owner,
            queue=queue,
            balance=balance,
            images_session=images_session,
            address_policy=address_policy,
        )

    async def close(self) -> None:
        self.imagine.filters.close()
        await self.catalog.close()
        await self.session.close()
        await self.images_session.close()
        await self.db.close()


async def fetch_capped(session: aiohttp.ClientSession, url: str, timings: Timings) -> bytes:
    """Download a Discord attachment with a size and time cap."""
    max_bytes = timings.attachment_max_bytes
    timeout = aiohttp.ClientTimeout(total=timings.attachment_timeout)
    async with session.get(url, timeout=timeout) as response:
        response.raise_for_status()
        if response.content_length is not None and response.content_length > max_bytes:
            raise ValueError("attachment too large")
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(65536):
            total += len(chunk)
            if total > max_bytes:
                raise ValueError("attachment too large")
            chunks.append(chunk)
        return b"".join(chunks)
