"""`flowpbx history-writer`: store call history from Redis into the database, apart from the
web processes (for larger deployments; `flowpbx serve` runs one itself by default)."""

from __future__ import annotations

import click

from flowpbx.cli.common import EXIT_PROBLEMS, EXIT_USAGE, fail


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
    """Read the call-event streams in Redis (REDIS_HOST) and store every call, its path and its
    recordings in the database (DATABASE_URL or DB_*), acknowledging each batch only after it
    is committed. While the database is down, entries wait in Redis; nothing is lost.

    Several writers may run at once (they share one consumer group). Set
    FLOWPBX_HISTORY_WRITER=false on the `flowpbx serve` processes when writers run apart.
    """
    import asyncio
    import logging

    from flowpbx.db import migrate
    from flowpbx.db.database import Database, DatabaseError
    from flowpbx.history.sources import RedisEventSource
    from flowpbx.history.writer import HistoryWriter
    from flowpbx.privacy import mask_logs
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
            "itself (the call events live in its memory); set REDIS_HOST to run writers apart",
            EXIT_USAGE,
        )
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    mask_logs()  # phone numbers quoted in errors' messages too (docs/privacy.md)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    log = logging.getLogger("flowpbx.history")
    if settings.db_upgrade_on_start:
        try:
            migrate.upgrade(database)
        except Exception as exc:
            log.error("database %s cannot be migrated yet (%s): retrying", database.describe(), exc)
    writer = HistoryWriter(RedisEventSource(connect(settings.redis_url)), database, batch=batch)
    log.info(
        "history writer %s: Redis %s:%d -> %s",
        writer.source.consumer if isinstance(writer.source, RedisEventSource) else "",
        settings.redis_host,
        settings.redis_port,
        database.describe(),
    )

    async def main() -> None:
        try:
            if once:
                await writer.drain(timeout=3600)
                log.info("history writer: %d entries stored; nothing waits", writer.status.entries)
            else:
                await writer.run()
        finally:
            await writer.source.aclose()
            database.dispose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except TimeoutError as exc:
        fail(str(exc), EXIT_PROBLEMS)
