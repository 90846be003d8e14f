"""The composition root: every service of the bot built from `Settings` and `Timings`, in one place.

Each service gets what it needs as constructor arguments, here and nowhere else; nothing is
wired afterwards. The one thing that comes later is the engine's `Publisher` (the chat side),
given to `Engine.start` by whoever runs the engine (the Discord adapter's delivery extension).
The Discord client receives one `Services` and never builds a store or a hub client itself,
which is what lets tests and benchmarks run the real bot against other databases and hubs.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

import aiohttp

from bot.alerts import BalanceWatcher
from bot.catalog import ModelCatalog
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine, Tools
from bot.eta import Estimator
from bot.guild_settings import GuildSettingsStore
from bot.hub.netguard import AddressPolicy, GuardedResolver, parse_allowed
from bot.hub_clients import HubClients
from bot.imagine import ImagineService
from bot.job_store import JobStore
from bot.keys import KeyVault
from bot.member_settings import MemberSettingsStore
from bot.queue import JobQueue, QueueRunner
from bot.quotas import QuotaService
from bot.references import AttachmentDownloader, ReferenceCache
from bot.source_images import ReferenceFetcher, SourceImages
from bot.timings import Timings


@dataclass
class Services:
    settings: Settings
    timings: Timings
    db: Database
    session: aiohttp.ClientSession
    images_session: aiohttp.ClientSession
    address_policy: AddressPolicy
    keys: KeyVault
    guilds: GuildSettingsStore
    members: MemberSettingsStore
    quotas: QuotaService
    jobs: JobStore
    hubs: HubClients
    catalog: ModelCatalog
    fetch_attachment: AttachmentDownloader
    fetch_reference: ReferenceFetcher
    references: ReferenceCache
    imagine: ImagineService
    queue: JobQueue
    queue_runner: QueueRunner
    balance: BalanceWatcher
    owner: str
    eta: Estimator
    engine: Engine

    @classmethod
    async def open(cls, settings: Settings, *, timings: Timings | None = None) -> Services:
        """Every service for `settings`; `timings` default to production's (tests pass shorter ones)."""
        timings = timings or Timings.from_settings(settings)
        db = await Database.open(settings.database_url, group_window=timings.group_window)
        session = aiohttp.ClientSession()
        address_policy = AddressPolicy(parse_allowed(settings.allow_private_image_hosts))
        images_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(address_policy))
        )
        fallback = settings.hub_api_key.get_secret_value() if settings.hub_api_key else None
        keys = KeyVault(db, settings.fernet, fallback)
        guilds = GuildSettingsStore(db)
        members = MemberSettingsStore(db)
        quotas = QuotaService(db)
        jobs = JobStore(db)
        hubs = HubClients(
            settings.hub_base_url,
            keys,
            session,
            timings=timings,
            images_session=images_session,
            address_policy=address_policy,
        )
        catalog = ModelCatalog(hubs.list_models)
        fetch_attachment = AttachmentDownloader(session, timings)
        fetch_reference = ReferenceFetcher(fetch_attachment, SourceImages(jobs, hubs, timings))
        references = ReferenceCache(fetch_reference)
        queue = JobQueue(db, jobs, guilds)
        queue_runner = QueueRunner(queue, timings=timings)
        imagine = ImagineService(
            db=db,
            settings=guilds,
            catalog=catalog,
            keys=keys,
            ledger=quotas.ledger,
            jobs=jobs,
            reference_cache=references,
            queue=queue,
            members=members,
        )
        balance = BalanceWatcher(guilds)
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        eta = Estimator()
        for model, tier, seconds in await jobs.recent_durations():  # what earlier processes saw
            eta.observe(model, tier, seconds)
        tools = Tools(
            jobs=jobs,
            ledger=quotas.ledger,
            hubs=hubs,
            references=references,
            balance=balance,
            owner=owner,
            timings=timings,
            eta=eta,
        )
        engine = Engine(
            tools,
            queue=queue_runner,
            concurrency=settings.max_concurrent_polls,
            retention=timedelta(days=settings.job_retention_days),
        )
        return cls(
            settings=settings,
            timings=timings,
            db=db,
            session=session,
            images_session=images_session,
            address_policy=address_policy,
            keys=keys,
            guilds=guilds,
            members=members,
            quotas=quotas,
            jobs=jobs,
            hubs=hubs,
            catalog=catalog,
            fetch_attachment=fetch_attachment,
            fetch_reference=fetch_reference,
            references=references,
            imagine=imagine,
            queue=queue,
            queue_runner=queue_runner,
            balance=balance,
            owner=owner,
            eta=eta,
            engine=engine,
        )

    async def close(self) -> None:
        self.imagine.filters.close()
        await self.catalog.close()
        await self.session.close()
        await self.images_session.close()
        await self.db.close()
