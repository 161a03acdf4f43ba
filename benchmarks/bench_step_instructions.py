"""Instructions per webhook, counted by callgrind: a measure that machine noise cannot move.

The webhook benchmark (bench_webhooks.py) times a real server, and on a shared machine its
rounds vary by ±20%. This one runs step_driver.py (the app in-process, signed webhooks over
httpx's ASGI transport, a real redis-server) under `valgrind --tool=callgrind` twice, with a
few calls and with more, and divides the difference in instructions by the difference in
webhooks: start-up and imports cancel out. With `--versus CHECKOUT` it counts another
checkout's engine the same way (e.g. a git worktree of an older commit), so that a change's
cost is a ratio of two exact counts.

`--uvicorn` counts the server of bench_webhooks.py instead, under load: webhook_server.py
(uvicorn, uvloop) runs under callgrind with instrumentation off, the load generator warms it up
with 32 connections, then instrumentation is switched on (callgrind_control) for 60 s of
calls, and the instructions are divided by the webhooks answered in that window. This sees
what a sequential run cannot: the garbage collector and the event loop with 32 requests in
flight.

    .venv/bin/python benchmarks/bench_step_instructions.py [--uvicorn] [--versus CHECKOUT]

It needs valgrind (Debian's `valgrind` package) and takes about four minutes per checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import redis_server  # noqa: E402

DRIVER = ROOT / "benchmarks" / "step_driver.py"
FEW, MANY = 10, 40
WEBHOOKS_PER_CALL = 6
RESULTS = ROOT / "benchmarks" / "results" / "step_instructions.json"
_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(checkout: Path, calls: int, redis_port: int, workdir: Path) -> int:
    """Instructions callgrind counts for the driver running `calls` calls on `checkout`."""
    env = dict(os.environ, PYTHONPATH=str(checkout / "src"))
    out = workdir / f"callgrind.{calls}.out"
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(DRIVER),
            str(calls),
            str(checkout / "flows"),
            str(redis_port),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return int(found.group(1))


def per_webhook(checkout: Path, redis_port: int) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="flowpbx-callgrind-"))
    try:
        few = instructions(checkout, FEW, redis_port, workdir)
        many = instructions(checkout, MANY, redis_port, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return (many - few) / ((MANY - FEW) * WEBHOOKS_PER_CALL)


def _loadgen(port: int, seconds: float, prefix: str, seed: int) -> dict[str, object]:
    spec = {
        "base": f"http://127.0.0.1:{port}",
        "mode": "follow",
        "path": "/api/calls/incoming",
        "branch": "open",
        "token": "bench-token",
        "connections": 32,
        "warmup": 0,
        "duration": seconds,
        "sid_prefix": prefix,
        "calls": 12_000,
        "seed": seed,
        "watch": {},
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "loadgen.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, object] = json.loads(result.stdout)
    return data


def _wait_for(port: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1.0):
            return
        time.sleep(0.5)
    raise SystemExit(f"the server under callgrind did not listen on {port}")


def _control(*args: object) -> None:
    subprocess.run(["callgrind_control", *map(str, args)], check=True, capture_output=True)


def per_webhook_under_load(checkout: Path, redis_port: int) -> float:
    """Instructions per webhook of the uvicorn server with 32 connections of calls."""
    workdir = Path(tempfile.mkdtemp(prefix="flowpbx-callgrind-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(
        os.environ,
        PYTHONPATH=str(checkout / "src"),
        TWILIO_AUTH_TOKEN="bench-token",
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(redis_port),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        FLOWPBX_HOURS_OVERRIDE="open",
        FLOWPBX_FLOWS_DIR=str(checkout / "flows"),
        LOG_LEVEL="WARNING",
    )
    out = workdir / "callgrind.out"
    server = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(checkout / "benchmarks" / "webhook_server.py"),
            "flowpbx",
            "--port",
            str(port),
        ],
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        _loadgen(port, 10, "0000aaaa", 1)
        subprocess.run(
            ["callgrind_control", "-i", "on", str(server.pid)], check=True, capture_output=True
        )
        measured = _loadgen(port, 60, "0000bbbb", 2)
        subprocess.run(
            ["callgrind_control", "-i", "off", str(server.pid)], check=True, capture_output=True
        )
        subprocess.run(
            ["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True
        )
        time.sleep(2)
        total = 0
        for dump in workdir.glob("callgrind.out*"):
            for line in dump.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        requests = int(str(measured["requests"]))
        return total / requests
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versus", type=Path, default=None, metavar="CHECKOUT")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--uvicorn", action="store_true", help="count the server under load")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("bench_step_instructions: valgrind is not installed", file=sys.stderr)
        return 1
    result: dict[str, float] = {}
    count = per_webhook_under_load if args.uvicorn else per_webhook
    with redis_server() as redis:
        result["this"] = count(ROOT, redis.port)
        print(f"this checkout: {result['this']:,.0f} instructions per webhook", flush=True)
        if args.versus is not None:
            result["versus"] = count(args.versus.resolve(), redis.port)
            ratio = result["this"] / result["versus"]
            result["ratio"] = ratio
            print(f"versus {args.versus}: {result['versus']:,.0f} instructions per webhook")
            print(f"this / versus: {ratio:.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
