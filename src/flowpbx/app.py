"""The composition root: settings to flows, a call store, the engine's service and the app.

The only place that chooses implementations; everything else receives what it uses.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.config import Config

from flowpbx.engine.hours import HoursStatus
from flowpbx.engine.service import CallService, utc_now
from flowpbx.engine.storage import CallStore
from flowpbx.errors import FlowpbxError
from flowpbx.language.catalog import FlowCatalog, load_catalog
from flowpbx.settings import Settings
from flowpbx.store.memory import MemoryCallStore
from flowpbx.store.redis import RedisCallStore
from flowpbx.twilio.twiml import TwimlRenderer, Urls
from flowpbx.web.app import create_app

log = logging.getLogger("flowpbx")


class StoreNotReachable(FlowpbxError):
    """The configured Redis does not answer at start-up."""


def catalog_from(settings: Settings, env_file: Path | None = Path(".env")) -> FlowCatalog:
    """Load the flows, with config values from the environment and .env."""
    file = env_file if env_file is not None and env_file.is_file() else None
    config = Config(file)

    def lookup(name: str) -> str | None:
        value = config(name, default=None)
        return None if value in (None, "") else str(value)

    return load_catalog(
        settings.flows_dir,
        numbers=settings.numbers,
        default=settings.default_flow,
        phone_number=settings.twilio_phone_number,
        lookup=lookup,
    )


def store_from(settings: Settings) -> CallStore:
    """Redis when REDIS_HOST is set, else this process's memory. Connects on first use, so
    that connections belong to the server's event loop."""
    url = settings.redis_url
    if url is None:
        log.warning("REDIS_HOST is not set: call state lives in this process only (one process)")
        return MemoryCallStore(settings.call_ttl, max_records=settings.events_max)
    return RedisCallStore.from_url(url, settings.call_ttl, settings.events_max)


async def check_store(settings: Settings) -> None:
    """Fail at start-up, not at the first call, when the configured Redis does not answer."""
    url = settings.redis_url
    if url is None:
        return
    probe = RedisCallStore.from_url(url, settings.call_ttl)
    try:
        if not await probe.ping():
            raise StoreNotReachable(
                f"Redis at {settings.redis_host}:{settings.redis_port} does not answer; "
                "check REDIS_HOST, REDIS_PORT and REDIS_PASSWORD"
            )
    finally:
        await probe.aclose()


def build_service(
    settings: Settings,
    catalog: FlowCatalog,
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
        retry_seconds=settings.store_retry_seconds,
    )


def build_app(settings: Settings) -> Starlette:
    """The application for these settings; raises on invalid flows or config."""
    catalog = catalog_from(settings)
    store = store_from(settings)
    log.info(
        "flowpbx: %d flow(s) %s, default %s, listening on %s:%d",
        len(catalog.flows),
        sorted(catalog.flows),
        catalog.default,
        settings.host,
        settings.port,
    )
    return create_app(settings, build_service(settings, catalog, store))
