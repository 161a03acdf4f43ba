"""`flowpbx apikey`: keys for the REST API (made, listed and revoked here)."""

from __future__ import annotations

import datetime as dt
import json

import click

from flowpbx.cli.common import EXIT_PROBLEMS, fail
from flowpbx.cli.db import database_for_command


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


@click.group(short_help="REST API keys: create, list, revoke.")
def apikey() -> None:
    """Keys for the REST API. A request carries one as `Authorization: Bearer <key>`."""


@apikey.command(short_help="Make a key and print it (once).")
@click.option("--name", required=True, help="Who or what uses the key, e.g. ana-softphone.")
@click.option(
    "--identity",
    default=None,
    help="The softphone identity the key acts for (letters, digits, _); it may then only get "
    "tokens and place calls for that identity.",
)
@click.option("--admin", is_flag=True, help="May act for any identity and list keys.")
def create(name: str, identity: str | None, admin: bool) -> None:
    """Make a key. The key is printed on standard output, alone, once: flowpbx keeps only a
    hash of it."""
    from flowpbx.db import apikeys

    with database_for_command(upgraded=True) as database:
        try:
            info, key = apikeys.create(
                database, name, identity=identity, admin=admin, now=dt.datetime.now(dt.UTC)
            )
        except apikeys.ApiKeyError as exc:
            fail(str(exc), EXIT_PROBLEMS)
    rights = (
        f"admin (identity {identity})"
        if admin and identity
        else "admin"
        if admin
        else f"acts for {identity}"
        if identity
        else "no identity: tokens and calls need an identity or --admin"
    )
    click.echo(f"created key {info.label}, id {info.id}, {rights}", err=True)
    click.echo(key)
    click.echo(
        "Copy it now: it is not shown again. Send it as `Authorization: Bearer <key>`.", err=True
    )


@apikey.command(name="list", short_help="List keys (never their secrets).")
@click.option("--all", "show_all", is_flag=True, help="Include revoked keys.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def list_(show_all: bool, fmt: str) -> None:
    """List keys: id, name, public prefix, identity, rights, when made and last used."""
    from flowpbx.db import apikeys

    with database_for_command(upgraded=True, existing=True) as database:
        keys = apikeys.list_keys(database, include_revoked=show_all)
    if fmt == "json":
        rows = [
            {
                "id": k.id,
                "name": k.name,
                "prefix": f"fpbx_{k.prefix}",
                "identity": k.identity,
                "admin": k.admin,
                "createdAt": k.created_at.isoformat(),
                "lastUsedAt": k.last_used_at.isoformat() if k.last_used_at else None,
                "revokedAt": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in keys
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not keys:
        click.echo("no keys yet: flowpbx apikey create --name NAME [--identity ID] [--admin]")
        return
    header: tuple[str, ...] = (
        "ID",
        "NAME",
        "PREFIX",
        "IDENTITY",
        "RIGHTS",
        "CREATED",
        "LAST USED",
        "REVOKED",
    )
    rows_text: list[tuple[str, ...]] = [
        (
            str(k.id),
            k.name,
            f"fpbx_{k.prefix}",
            k.identity or "-",
            "admin" if k.admin else "own identity" if k.identity else "no identity",
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    if not show_all:
        header = header[:-1]
        rows_text = [row[:-1] for row in rows_text]
    widths = [max(len(row[i]) for row in (header, *rows_text)) for i in range(len(header))]
    for row in (header, *rows_text):
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@apikey.command(short_help="Revoke a key (by id, prefix or name).")
@click.argument("key")
def revoke(key: str) -> None:
    """Revoke KEY (its id, its prefix fpbx_xxxxxxxx, or its name): it stops working at once."""
    from flowpbx.db import apikeys

    with database_for_command(upgraded=True, existing=True) as database:
        try:
            info = apikeys.revoke(database, key, now=dt.datetime.now(dt.UTC))
        except apikeys.ApiKeyError as exc:
            fail(str(exc), EXIT_PROBLEMS)
    click.echo(f"revoked key {info.label} (id {info.id})")
