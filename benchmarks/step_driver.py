"""Drive N calls through the flowpbx app in this process: signed webhooks, real Redis.

Run by bench_step_instructions.py under callgrind; it only needs `flowpbx.app.build_app` and
the webhook routes, so the same script drives an older checkout (put its src/ first on
PYTHONPATH). Each call walks the Spanish menu: incoming, 4, 1, the policy number, no answer,
a voicemail (six webhooks).

    python benchmarks/step_driver.py CALLS FLOWS_DIR REDIS_PORT
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

TOKEN = "bench-token"
BASE = "https://pbx.example.com"
RECORDING = "https://api.twilio.com/r"
STEPS: tuple[tuple[str, dict[str, str]], ...] = (
    ("/api/calls/incoming", {}),
    ("/api/calls/gather?seq=1", {"Digits": "4"}),
    ("/api/calls/gather?seq=2", {"Digits": "1"}),
    ("/api/calls/gather?seq=3", {"Digits": "12345678"}),
    ("/api/calls/dial?seq=4", {"DialCallStatus": "no-answer"}),
    (
        "/api/calls/record?seq=5",
        {"RecordingUrl": "https://api.twilio.com/r", "RecordingDuration": "9"},
    ),
)


async def drive(calls: int, flows: Path, redis_port: int) -> None:
    os.environ.update(
        TWILIO_AUTH_TOKEN=TOKEN,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(redis_port),
        PUBLIC_BASE_URL=BASE,
        FLOWPBX_HOURS_OVERRIDE="open",
        LOG_LEVEL="WARNING",
    )
    from flowpbx.app import build_app
    from flowpbx.settings import Settings

    settings = dataclasses.replace(Settings.from_env(env_file=None), flows_dir=flows)
    app = build_app(settings)
    validator = RequestValidator(TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        for n in range(calls):
            sid = f"CA{os.getpid():08x}{n:024x}"
            for path, extra in STEPS:
                params = {
                    "AccountSid": "AC" + "5a" * 16,
                    "CallSid": sid,
                    "From": "+34600111222",
                    "To": "+34910000000",
                    "Direction": "inbound",
                    "CallStatus": "in-progress",
                    **extra,
                }
                signature = validator.compute_signature(BASE + path, params)
                headers = {
                    "X-Twilio-Signature": signature,
                    "Content-Type": "application/x-www-form-urlencoded",
                }
                reply = await client.post(path, content=urlencode(params), headers=headers)
                if reply.status_code != 200 or "Lo sentimos" in reply.text:
                    raise SystemExit(f"{path}: {reply.status_code} {reply.text[:200]}")


if __name__ == "__main__":
    asyncio.run(drive(int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))
