"""The two servers of benchmarks/bench_webhooks.py, run under identical uvicorn settings.

    python benchmarks/webhook_server.py flowpbx  --port P   # the engine, configured from env
    python benchmarks/webhook_server.py baseline --port P   # a bare Starlette TwiML endpoint

Both run one uvicorn worker on 127.0.0.1 with uvloop and httptools, log level warning, no
access log and no proxy-header middleware (as `flowpbx serve` runs it). The flowpbx app is built
with `flowpbx.app.build_app(Settings.from_env())` inside the server's own event loop, so its
Redis connections belong to the loop that uses them. The baseline answers every POST to
BASELINE_PATH with the fixed document BASELINE_TWIML, without reading the body or checking a
signature: the floor that any webhook handler in this server stack pays.

With --profile FILE the server runs under cProfile and writes the stats to FILE when it stops
(SIGINT or SIGTERM): a deterministic profile, with cProfile's own overhead on every call.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import signal
from pathlib import Path
from types import FrameType

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HOST = "127.0.0.1"
BASELINE_PATH = "/twiml"
BASELINE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Say language="es-ES" voice="Polly.Lucia">Bienvenido a Seguros.</Say>'
    '<Gather action="http://127.0.0.1/api/calls/gather?seq=1" actionOnEmptyResult="true" '
    'input="dtmf" method="POST" numDigits="1" timeout="5">'
    '<Say language="es-ES" voice="Polly.Lucia">Para seguros de vida, pulse 1. '
    "Para seguros de salud, pulse 2. Para seguros de hogar, pulse 3. "
    "Para seguros de automóvil, pulse 4. Para hablar con un agente, pulse 9.</Say>"
    "</Gather>"
    '<Redirect method="POST">http://127.0.0.1/api/calls/gather?seq=1</Redirect>'
    "</Response>"
)
"""A fixed TwiML document the size and shape of flowpbx's answer to an incoming call."""


def baseline_app() -> Starlette:
    """One POST route that answers a fixed TwiML document."""
    body = BASELINE_TWIML.encode()

    async def twiml(request: Request) -> Response:
        return Response(body, media_type="application/xml")

    return Starlette(routes=[Route(BASELINE_PATH, twiml, methods=["POST"])])


async def _flowpbx_app() -> Starlette:
    from flowpbx.app import build_app, check_store
    from flowpbx.settings import Settings

    settings = Settings.from_env(env_file=None)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    await check_store(settings)
    return build_app(settings)


def uvicorn_config(app: Starlette, port: int) -> uvicorn.Config:
    """The server settings both apps share."""
    return uvicorn.Config(
        app,
        host=HOST,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        workers=1,
    )


async def serve(kind: str, port: int) -> None:
    app = await _flowpbx_app() if kind == "flowpbx" else baseline_app()
    await uvicorn.Server(uvicorn_config(app, port)).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("flowpbx", "baseline"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    args = parser.parse_args()

    def stop(signum: int, frame: FrameType | None) -> None:
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: end here.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args.kind, args.port))
    finally:
        if profiler is not None and args.profile is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
