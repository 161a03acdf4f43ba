"""`flowpbx history-writer`: store call history from Redis into the database, apart from the
web processes (for larger deployments; `flowpbx serve` runs one itself by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from flowpbx.cli.common import EXIT_PROBLEMS, EXIT_USAGE, fail

if TYPE_CHECKING:
    from flowpbx.history.prices import PriceFiller
    from flowpbx.history.writer import HistoryWriter
    from flowpbx.twilio.rest import TwilioRest


@click.command("history-writer", short_help="Store call history from Redis into the database.")
@click.option(
    "--once",
    is_flag=True,
    help="Store what is waiting now, then stop (e.g. after an outage, or from a timer).",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Entries per database transaction.",
)
def history_writer(once: bool, batch: int) -> None:
    """Read the call-event streams in Redis (REDIS_HOST, or a cluster: REDIS_CLUSTER_NODES)
    and store every call, its path and its recordings in the database (DATABASE_URL, or
    DB_HOST and the other DB_ settings for PostgreSQL, else the SQLite file FLOWPBX_DB_PATH),
    acknowledging each batch only after it is committed. While the database is down, entries
    wait in Redis; nothing is lost.

    With Twilio credentials (TWILIO_ACCOUNT_SID and an API key or the auth token), it also
    asks Twilio what each ended call cost. Several writers may run at once (they share one
    consumer group). Set
    FLOWPBX_HISTORY_WRITER=false on the `flowpbx serve` processes when writers run apart.
    """
    import asyncio
    import logging

    from flowpbx.app import events_kept, twilio_rest
    from flowpbx.db import migrate
    from flowpbx.db.database import Database, DatabaseError
    from flowpbx.history.prices import PriceFiller
    from flowpbx.history.sources import RedisEventSource
    from flowpbx.history.writer import HistoryWriter
    from flowpbx.logs import configure_logging, secrets_of
    from flowpbx.settings import Settings, SettingsError
    from flowpbx.store.redis import connect

    try:
        settings = Settings.from_env(webhooks=False)
        database = Database(settings.database_url)
    except (SettingsError, DatabaseError) as exc:
        fail(str(exc), EXIT_USAGE)
    if settings.redis_url is None:
        fail(
            "REDIS_HOST is not set: without Redis, call history is written by `flowpbx serve` "
            "itself (the call events live in its memory); set REDIS_HOST (or "
            "REDIS_CLUSTER_NODES) to run writers apart",
            EXIT_USAGE,
        )
    # JSON lines (LOG_FORMAT), numbers masked and secrets redacted (docs/operations.md § 6).
    configure_logging(settings.log_level, settings.log_format, secrets=secrets_of(settings))
    log = logging.getLogger("flowpbx.history")
    if settings.db_upgrade_on_start:
        try:
            migrate.upgrade(database)
        except Exception as exc:
            log.error(
                "database %s cannot be migrated yet (%s): history waits in Redis until it can",
                database.describe(),
                exc,
            )
    source = RedisEventSource(connect(settings.redis_url), limit=events_kept(settings))
    writer = HistoryWriter(source, database, batch=batch)
    log.info(
        "history writer %s: %s -> %s",
        writer.source.consumer if isinstance(writer.source, RedisEventSource) else "",
        settings.redis_where,
        database.describe(),
    )

    rest, _ = twilio_rest(settings)
    prices = PriceFiller(database, rest) if rest is not None and not once else None
    work = _work(writer, prices, rest, once)
    try:
        asyncio.run(work)
    except KeyboardInterrupt:
        pass
    except TimeoutError as exc:
        fail(str(exc), EXIT_PROBLEMS)
    finally:
        database.dispose()


async def _work(
    writer: HistoryWriter, prices: PriceFiller | None, rest: TwilioRest | None, once: bool
) -> None:
    """Store history (what waits now, with `once`; else until stopped), and prices."""
    import asyncio
    import logging

    try:
        if once:
            await writer.drain(timeout=3600)
            logging.getLogger("flowpbx.history").info(
                "history writer: %d entries stored; nothing waits", writer.status.entries
            )
        elif prices is not None:
            await asyncio.gather(writer.run_forever(), prices.run())
        else:
            await writer.run_forever()
    finally:
        await writer.source.aclose()
        if rest is not None:
            await rest.aclose()
