"""The composition root: settings to flows, a call store, the engine's service and the app.

The only place that chooses implementations; everything else receives what it uses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.config import Config
from starlette.requests import Request

from flowpbx.db import migrate
from flowpbx.db.database import Database
from flowpbx.dialing.dialer import Dialer
from flowpbx.dialing.pacer import MemoryPacer, Pacer
from flowpbx.dialing.rules import Destinations
from flowpbx.engine.hours import HoursStatus
from flowpbx.engine.progress import Report
from flowpbx.engine.service import CallService, utc_now
from flowpbx.engine.storage import CallStore
from flowpbx.errors import FlowpbxError
from flowpbx.history import sink
from flowpbx.history.prices import PriceFiller
from flowpbx.history.sources import EventSource, MemoryEventSource, RedisEventSource
from flowpbx.history.writer import HistoryWriter
from flowpbx.language.catalog import Catalog, FlowCatalog, load_catalog
from flowpbx.language.library import FlowLibrary
from flowpbx.metrics import CallMetrics
from flowpbx.queues.directory import AgentDirectory
from flowpbx.queues.engine import QueueEngine
from flowpbx.queues.memory_store import MemoryQueueStore
from flowpbx.queues.redis_store import RedisQueueStore
from flowpbx.queues.scheduler import QueueScheduler
from flowpbx.queues.store import QueueStore
from flowpbx.reloading import KEEP_EVERY_SECONDS, FlowReloader, fingerprint
from flowpbx.settings import Settings
from flowpbx.store.memory import MemoryCallStore
from flowpbx.store.pacer import RedisPacer
from flowpbx.store.redis import (
    EVENT_SHARDS,
    RedisCallStore,
    connect,
    silent_masters,
)
from flowpbx.twilio.rest import TwilioCredentials, TwilioRest
from flowpbx.twilio.signature import base_of, public_url
from flowpbx.twilio.tokens import TokenIssuer
from flowpbx.twilio.twiml import TwimlRenderer, Urls
from flowpbx.web.api.framework import Authenticator
from flowpbx.web.api.queues import QueueApi
from flowpbx.web.api.routes import RestApi
from flowpbx.web.app import HistoryParts, QueueParts, RestParts, create_app

log = logging.getLogger("flowpbx")

MIGRATION_RETRY_SECONDS = 10
PLACEHOLDER_ACCOUNT = "AC" + "0" * 32
"""The account SID .env.example ships for local development."""
PLACEHOLDER_AUTH_TOKEN = "local-development-token"


class StoreNotReachable(FlowpbxError):
    """The configured Redis does not answer at start-up."""


def config_lookup(env_file: Path | None = Path(".env")) -> Callable[[str], str | None]:
    """Flow config values: the environment, else .env as it is now (each load of the flows
    makes its own lookup, so that a reload takes an edited .env)."""
    file = env_file if env_file is not None and env_file.is_file() else None
    config = Config(file)

    def lookup(name: str) -> str | None:
        value = config(name, default=None)
        return None if value in (None, "") else str(value)

    return lookup


def catalog_from(settings: Settings, env_file: Path | None = Path(".env")) -> FlowCatalog:
    """Load the flows, with config values from the environment and .env."""
    return load_catalog(
        settings.flows_dir,
        numbers=settings.numbers,
        default=settings.default_flow,
        phone_number=settings.twilio_phone_number,
        lookup=config_lookup(env_file),
    )


def store_from(settings: Settings) -> CallStore:
    """Redis (REDIS_HOST, or a Redis Cluster: REDIS_CLUSTER_NODES) when set, else this
    process's memory. Connects on first use, so that connections belong to the server's event
    loop."""
    url = settings.redis_url
    if url is None:
        log.warning(
            "neither REDIS_HOST nor REDIS_CLUSTER_NODES is set: call state lives in this "
            "process only (one process)"
        )
        return MemoryCallStore(settings.call_ttl, max_records=settings.events_max)
    log.info("call state and queues in %s", store_place(settings))
    return RedisCallStore.from_url(url, settings.call_ttl, settings.events_max)


def store_place(settings: Settings) -> str:
    """Where call state and queues live, for the start-up line (no password): 'Redis at
    host:port (db N)', 'Redis Cluster (3 seed nodes: host:port, ...)' or 'this process'."""
    if settings.redis_cluster_nodes:
        nodes = settings.redis_cluster_nodes
        listed = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in nodes)
        return f"Redis Cluster ({len(nodes)} seed node{'s' if len(nodes) > 1 else ''}: {listed})"
    if settings.redis_host:
        return f"{settings.redis_where} (db {settings.redis_db})"
    return settings.redis_where


async def check_store(settings: Settings) -> None:
    """Fail at start-up, not at the first call, when the configured Redis does not answer."""
    url = settings.redis_url
    if url is None:
        return
    probe = RedisCallStore.from_url(url, settings.call_ttl)
    try:
        if await probe.ping():
            return
        if not settings.redis_cluster_nodes:
            raise StoreNotReachable(
                f"{settings.redis_where} does not answer; check REDIS_HOST, REDIS_PORT and "
                "REDIS_PASSWORD"
            )
        silent = await silent_masters(probe.client)
        if not silent:  # no node answered (or, meanwhile, every master did)
            raise StoreNotReachable(
                f"{settings.redis_where} does not answer; check REDIS_CLUSTER_NODES and "
                "REDIS_PASSWORD"
            )
        which = (
            f"master {silent[0]} does not answer"
            if len(silent) == 1
            else f"masters {', '.join(silent)} do not answer"
        )
        raise StoreNotReachable(
            f"{settings.redis_where}: {which} (the others do); every master must answer, "
            "or the calls of its slots have no state: start it again, or wait for a replica "
            "to take its place"
        )
    finally:
        await probe.aclose()


def build_service(
    settings: Settings,
    catalog: Catalog,
    store: CallStore,
    clock: Callable[[], dt.datetime] = utc_now,
) -> CallService:
    """The engine's service for these settings (webhook URLs under PUBLIC_BASE_URL)."""
    override = HoursStatus(settings.hours_override) if settings.hours_override else None
    return CallService(
        catalog=catalog,
        store=store,
        renderer=TwimlRenderer(Urls(settings.public_base_url)),
        clock=clock,
        hours_override=override,
        destinations=Destinations(settings.allowed_prefixes, settings.blocked_prefixes),
        retry_seconds=settings.store_retry_seconds,
        observer=CallMetrics(),
    )


def token_issuer(settings: Settings) -> tuple[TokenIssuer | None, tuple[str, ...]]:
    """The softphone token issuer, or None and the settings it lacks."""
    needed = {
        "TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "TWILIO_API_KEY": settings.twilio_api_key,
        "TWILIO_API_SECRET": settings.twilio_api_secret,
        "TWILIO_TWIML_APP_SID": settings.twilio_twiml_app_sid,
    }
    missing = tuple(name for name, value in needed.items() if not value)
    if missing:
        return None, missing
    return (
        TokenIssuer(
            account_sid=settings.twilio_account_sid,
            api_key=settings.twilio_api_key,
            api_secret=settings.twilio_api_secret,
            twiml_app_sid=settings.twilio_twiml_app_sid,
            ttl=settings.token_ttl,
        ),
        (),
    )


def twilio_rest(settings: Settings) -> tuple[TwilioRest | None, tuple[str, ...]]:
    """Twilio's REST client (an API key when set, else the auth token), or None and the
    settings it lacks."""
    if not settings.twilio_account_sid:
        return None, ("TWILIO_ACCOUNT_SID",)
    if settings.twilio_api_key and settings.twilio_api_secret:
        username, password = settings.twilio_api_key, settings.twilio_api_secret
    else:
        username, password = settings.twilio_account_sid, settings.twilio_auth_token
    credentials = TwilioCredentials(
        account_sid=settings.twilio_account_sid,
        username=username,
        password=password,
        base_url=settings.twilio_api_url,
    )
    return TwilioRest(credentials), ()


def pacer_from(settings: Settings) -> Pacer:
    """The outbound pace shared through Redis, or kept in this process without it."""
    url = settings.redis_url
    return MemoryPacer() if url is None else RedisPacer.from_url(url)


def caller_ids(settings: Settings) -> tuple[str, ...]:
    """The numbers outbound calls may show: TWILIO_PHONE_NUMBER first, then FLOWPBX_NUMBERS."""
    numbers = [settings.twilio_phone_number] if settings.twilio_phone_number else []
    numbers += [n for n in settings.numbers if n not in numbers]
    return tuple(numbers)


def public_base(settings: Settings, request: Request) -> str:
    """Where Twilio reaches this service: PUBLIC_BASE_URL, else the address the request was
    made to as the webhooks see it (proxy headers only from FLOWPBX_TRUSTED_PROXIES)."""
    if settings.public_base_url:
        return settings.public_base_url
    url = public_url(request, "", settings.trusted_proxies)
    return base_of(url, request.url.path)


def rest_parts(
    settings: Settings,
    catalog: Catalog,
    db: Database,
    store: CallStore | None = None,
    twilio: tuple[TwilioRest | None, tuple[str, ...]] | None = None,
    *,
    queue_store: QueueStore | None = None,
    agents: AgentDirectory | None = None,
    on_agent_change: Callable[[], None] | None = None,
) -> RestParts:
    """The REST API for these settings, with its start (migrations) and stop (which closes
    the Twilio REST client, `twilio` when given: `twilio_rest(settings)`). The queue
    endpoints use `queue_store` and `agents` when given (those of the queue engine, whose
    owner closes them; `on_agent_change` wakes its scheduler), else their own."""
    tokens, missing_token = token_issuer(settings)
    rest, missing_rest = twilio or twilio_rest(settings)
    url = settings.redis_url
    queues: QueueStore = queue_store or (
        MemoryQueueStore() if url is None else RedisQueueStore.from_url(url)
    )
    pacer = pacer_from(settings)
    dialer = None
    missing_dialer = missing_rest + (
        () if settings.twilio_phone_number else ("TWILIO_PHONE_NUMBER",)
    )
    if rest is not None and not missing_dialer:
        dialer = Dialer(
            rest=rest,
            pacer=pacer,
            destinations=Destinations(settings.allowed_prefixes, settings.blocked_prefixes),
            account=settings.twilio_account_sid,
            caller_ids=caller_ids(settings),
            calls_per_second=settings.calls_per_second,
            max_wait=settings.call_wait,
        )
    # Call history, analytics and queue statistics read from a replica when one is named.
    reads = Database(settings.database_read_url) if settings.database_read_url else None
    if reads is not None:
        log.info("call history is read from %s (DATABASE_READ_URL)", reads.describe())
    api = RestApi(
        db=db,
        reads=reads,
        catalog=catalog,
        base_url=partial(public_base, settings),
        tokens=tokens,
        missing_token=missing_token,
        dialer=dialer,
        missing_dialer=missing_dialer,
        report=store.report if store is not None else None,
        queues=QueueApi(
            db=db,
            reads=reads,
            catalog=catalog,
            store=queues,
            directory=agents or AgentDirectory(db),
            on_agent_change=on_agent_change,
        ),
    )

    retry: list[asyncio.Task[None]] = []

    async def upgrade_once() -> bool:
        try:
            before, after = await db.run(migrate.upgrade, db)
        except Exception as exc:
            # Down, locked by a stuck migration, newer than this release, no rights: whatever
            # it is, calls must go on. Only the REST API waits for the database.
            why = exc.orig if isinstance(exc, OperationalError) else exc
            log.error(
                "database %s cannot be migrated (%s): calls go on; the REST API answers 503 "
                "until it can; migrations are tried again every %d s",
                db.describe(),
                why,
                MIGRATION_RETRY_SECONDS,
            )
            return False
        if before != after:
            log.info("database %s upgraded: %s -> %s", db.describe(), before or "empty", after)
        return True

    async def upgrade_until_done() -> None:
        while not await upgrade_once():
            await asyncio.sleep(MIGRATION_RETRY_SECONDS)

    async def upgrade() -> None:
        # Calls must not wait on the database: a database that is down at start-up is
        # retried in the background, and only the REST API waits for it.
        if not await upgrade_once():
            retry.append(asyncio.create_task(upgrade_until_done()))

    async def close() -> None:
        for task in retry:
            task.cancel()
        await pacer.aclose()
        if queue_store is None:  # its own
            await queues.aclose()
        if rest is not None:
            await rest.aclose()
        db.dispose()
        if reads is not None:
            reads.dispose()

    startup = [upgrade] if settings.db_upgrade_on_start else []
    return RestParts(api=api, auth=Authenticator(db), startup=startup, shutdown=[close])


def events_kept(settings: Settings) -> int:
    """How many entries the Redis streams keep at most: each of the 64 is trimmed at its share
    of FLOWPBX_EVENTS_MAX (store/redis.py)."""
    return EVENT_SHARDS * max(100, settings.events_max // EVENT_SHARDS)


def event_source(settings: Settings, store: CallStore) -> EventSource:
    """Where call history reads: the Redis streams, or the memory store's log."""
    if isinstance(store, MemoryCallStore):
        return MemoryEventSource(store.records)
    url = settings.redis_url
    assert url is not None, "a Redis store has a Redis URL"
    return RedisEventSource(connect(url), limit=events_kept(settings))


def history_parts(
    settings: Settings, store: CallStore, db: Database, rest: TwilioRest | None
) -> HistoryParts:
    """Call history in the web process: its writer unless FLOWPBX_HISTORY_WRITER=false, and
    the price filler on `rest` (which its owner closes)."""
    source = event_source(settings, store)
    writer = HistoryWriter(source, db)
    priced = settings.history_writer and settings.twilio_account_sid != PLACEHOLDER_ACCOUNT
    prices = PriceFiller(db, rest) if rest is not None and priced else None
    if not settings.history_writer:
        if isinstance(store, MemoryCallStore):
            log.warning(
                "FLOWPBX_HISTORY_WRITER=false without Redis: no process can write call "
                "history (a separate history writer needs Redis)"
            )
        else:
            log.info("call history is written by a separate `flowpbx history-writer`")

    async def direct(report: Report) -> bool:
        try:
            await db.run(sink.write, db, [report])
        except Exception as exc:
            log.error("call history: %s could not be written to the database: %s", report.id, exc)
            return False
        return True

    def state() -> str:
        return writer.status.state if settings.history_writer else "separate process"

    return HistoryParts(
        writer=writer if settings.history_writer else None,
        prices=prices,
        direct=direct,
        backlog=writer.backlog,
        state=state,
        aclose=source.aclose,
    )


def build_app(settings: Settings) -> Starlette:
    """The application for these settings; raises on invalid flows or config."""
    seen = fingerprint(settings.flows_dir)  # before loading: an edit saved meanwhile counts
    catalog = catalog_from(settings)
    store = store_from(settings)
    db = Database(settings.database_url)
    log.info(
        "flowpbx: %d flow(s) %s, default %s, starting on %s:%d",
        len(catalog.flows),
        sorted(catalog.flows),
        catalog.default,
        settings.host,
        settings.port,
    )
    log.info("database: %s", db.describe())
    if (
        settings.twilio_auth_token == PLACEHOLDER_AUTH_TOKEN
        and settings.twilio_account_sid != PLACEHOLDER_ACCOUNT
    ):
        log.warning(
            "TWILIO_AUTH_TOKEN is still the .env.example placeholder with a real account: "
            "anyone who reads it can sign webhooks; set the account's auth token"
        )
    if settings.twilio_account_sid == PLACEHOLDER_ACCOUNT:
        log.warning(
            "TWILIO_ACCOUNT_SID is the .env.example placeholder: softphone tokens and "
            "outbound calls will not work with Twilio until .env has your account's values"
        )
    # Everything reads the flows through the library, which a reload swaps whole.
    library = FlowLibrary(catalog, lookup=config_lookup())
    reloader = FlowReloader(
        library,
        load=partial(catalog_from, settings),
        folder=settings.flows_dir,
        store=store,
        poll_seconds=settings.flows_reload,
        seen=seen,
        # Kept texts live twice the call TTL: refreshed well before they could lapse.
        keep_seconds=min(KEEP_EVERY_SECONDS, settings.call_ttl / 2),
    )
    service = build_service(settings, library, store)
    twilio = twilio_rest(settings)  # one client: the REST API's, the price filler's, queues'
    queues = queue_parts(settings, library, store, db, twilio[0])
    rest = rest_parts(
        settings,
        library,
        db,
        store,
        twilio,
        queue_store=queues.engine.store,
        agents=queues.engine.directory,
        on_agent_change=queues.engine.wake,
    )
    return create_app(
        settings,
        service,
        rest,
        history_parts(settings, store, db, twilio[0]),
        queues,
        reloader=reloader,
    )


def queue_store_from(settings: Settings) -> QueueStore:
    """Queues in Redis when REDIS_HOST or REDIS_CLUSTER_NODES is set (shared by every
    process), else in memory."""
    url = settings.redis_url
    return MemoryQueueStore() if url is None else RedisQueueStore.from_url(url)


def queue_parts(
    settings: Settings,
    catalog: Catalog,
    store: CallStore,
    db: Database,
    rest: TwilioRest | None,
) -> QueueParts:
    """The queue engine on the call store's Redis (or memory), the agents in the database,
    Twilio's REST client `rest` (its owner closes it), and this process's scheduler unless
    FLOWPBX_QUEUE_SCHEDULER=false."""
    queue_store = queue_store_from(settings)
    real_account = settings.twilio_account_sid != PLACEHOLDER_ACCOUNT
    engine = QueueEngine(
        store=queue_store,
        directory=AgentDirectory(db),
        queues=lambda: catalog.serving_queues,
        report=store.report,
        twilio=rest if real_account else None,
        base_url=settings.public_base_url,
        company_number=settings.twilio_phone_number,
        destinations=Destinations(settings.allowed_prefixes, settings.blocked_prefixes),
        callback_delay=settings.callback_delay,
    )
    scheduler = QueueScheduler(engine, tick=settings.queue_tick)
    return QueueParts(
        engine=engine,
        scheduler=scheduler if settings.queue_scheduler else None,
        aclose=queue_store.aclose,
    )
