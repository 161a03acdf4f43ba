"""`flowpbx sign`: the signature Twilio would send, for hand-made test requests."""

from __future__ import annotations

import click


@click.command(short_help="Print the X-Twilio-Signature for a test request.")
@click.argument("url")
@click.argument("params", nargs=-1)
@click.option(
    "--token",
    envvar="TWILIO_AUTH_TOKEN",
    default=None,
    help="Auth token (default TWILIO_AUTH_TOKEN or .env).",
)
def sign(url: str, params: tuple[str, ...], token: str | None) -> None:
    """Print the X-Twilio-Signature Twilio would send for a POST of PARAMS (KEY=VALUE) to URL."""
    from twilio.request_validator import RequestValidator

    from flowpbx.settings import Settings

    if token is None:
        token = Settings.from_env({"FLOWPBX_DEV_SKIP_SIGNATURE": "true"}).twilio_auth_token
    if not token:
        raise click.UsageError("no auth token: set TWILIO_AUTH_TOKEN or pass --token")
    fields: dict[str, str] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep:
            raise click.UsageError(f"parameter {param!r} is not KEY=VALUE")
        fields[key] = value
    click.echo(RequestValidator(token).compute_signature(url, fields))
