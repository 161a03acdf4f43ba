"""Instructions per webhook, counted by callgrind: a measure that machine noise cannot move.

The webhook benchmark (bench_webhooks.py) times a real server, and on a shared machine its
rounds vary by ±20%. This one runs step_driver.py (the app in-process, signed webhooks over
httpx's ASGI transport, a real redis-server) under `valgrind --tool=callgrind` twice, with a
few calls and with more, and divides the difference in instructions by the difference in
webhooks: start-up and imports cancel out. With `--versus CHECKOUT` it counts another
checkout's engine the same way (e.g. a git worktree of an older commit), so that a change's
cost is a ratio of two exact counts.

    .venv/bin/python benchmarks/bench_step_instructions.py [--versus CHECKOUT]

It needs valgrind (Debian's `valgrind` package) and takes about four minutes per checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versus", type=Path, default=None, metavar="CHECKOUT")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("bench_step_instructions: valgrind is not installed", file=sys.stderr)
        return 1
    result: dict[str, float] = {}
    with redis_server() as redis:
        result["this"] = per_webhook(ROOT, redis.port)
        print(f"this checkout: {result['this']:,.0f} instructions per webhook", flush=True)
        if args.versus is not None:
            result["versus"] = per_webhook(args.versus.resolve(), redis.port)
            ratio = result["this"] / result["versus"]
            result["ratio"] = ratio
            print(f"versus {args.versus}: {result['versus']:,.0f} instructions per webhook")
            print(f"this / versus: {ratio:.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
