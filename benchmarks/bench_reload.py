"""Benchmark live reload (issue #10): what checking a flow costs as it grows, and what reloading
costs the calls in progress.

1. Load cost: `load_catalog` (read, YAML, schema, build, every check) on generated flows of
   about 30, 120 and 480 nodes (menus of departments, each a say, a dial and a voicemail), p50
   and p99 over repeated loads, and the growth per node.
2. Calls during reloads: one process's event loop steps calls of the Spanish menu through the
   call service (in-process store, as `make run`) and measures each step's latency, in rounds:
   - baseline: no reload;
   - reloading: a reload every 50 ms, checked in a worker thread as the service does;
   - on the loop: the same reloads done on the event loop, as a naive service would.
   The ratios of the p99 latencies to the baseline's, measured in the same run, are what count
   (these machines are noisy).

Run it with `.venv/bin/python benchmarks/bench_reload.py` (about 40 s; `--quick` for a smoke
run). It prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from flowpbx.engine.events import DialEnded, DialResult, KeysPressed, NewCall  # noqa: E402
from flowpbx.engine.service import CallService  # noqa: E402
from flowpbx.language.catalog import FlowCatalog, load_catalog  # noqa: E402
from flowpbx.language.library import FlowLibrary  # noqa: E402
from flowpbx.reloading import FlowReloader  # noqa: E402
from flowpbx.store.memory import MemoryCallStore  # noqa: E402
from flowpbx.twilio.twiml import TwimlRenderer, Urls  # noqa: E402

OPEN = dt.datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
RENDER = TwimlRenderer(Urls("https://pbx.example.com"))
INTERVAL = 0.002
"""A webhook every 2 ms (500 a second) while measuring."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def generated_flow(departments: int) -> str:
    """A flow with nested menus of `departments` departments (3 nodes each, ~1 menu per 8)."""
    lines = ["name: grande", "entry: menu_0", "nodes:"]
    menus = (departments + 7) // 8
    for m in range(menus):
        options = [f"      {k + 1}: dep_{m * 8 + k}" for k in range(8) if m * 8 + k < departments]
        if m + 1 < menus:
            options.append(f"      9: menu_{m + 1}")
        words = ", ".join(f"pulse {k + 1}" for k in range(len(options)))
        lines += [
            f"  menu_{m}:",
            "    type: menu",
            f"    prompt: Para cada departamento, {words}.",
            "    options:",
            *options,
            "    no_input: No hemos recibido ninguna opción.",
            "    exhausted: fin",
        ]
    for d in range(departments):
        lines += [
            f"  dep_{d}:",
            "    type: say",
            f"    text: Le pasamos con el departamento {d}.",
            f"    next: llamar_{d}",
            f"  llamar_{d}:",
            "    type: dial",
            f'    to: "+3491{d:07d}"',
            f"    no_answer: buzon_{d}",
            f"  buzon_{d}:",
            "    type: record",
            "    prompt: Deje su mensaje después de la señal.",
            "    next: fin",
        ]
    lines += ["  fin:", "    type: hangup", "    text: Adiós."]
    return "\n".join(lines) + "\n"


def load(folder: Path) -> FlowCatalog:
    return load_catalog(folder, numbers={}, default="", phone_number="", lookup=lambda _: None)


def load_cost(rounds: int) -> list[tuple[int, float, float]]:
    """(nodes, p50 ms, p99 ms) of a full load per flow size."""
    results = []
    for departments in (9, 38, 158):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "grande.yaml").write_text(generated_flow(departments), "utf-8")
            nodes = len(load(folder).flows["grande"].flow.nodes)
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                load(folder)
                times.append((time.perf_counter() - start) * 1000)
        results.append((nodes, statistics.median(times), pct(times, 0.99)))
    return results


async def call_steps(service: CallService, calls: int, first: int) -> list[float]:
    """Latency (ms) of every step of `calls` calls (incoming, 1, no answer), each webhook
    arriving every INTERVAL seconds: from its arrival time, so that a blocked event loop's
    delay counts, as it does for Twilio."""
    loop = asyncio.get_running_loop()
    latencies = []
    arrival = loop.time()
    for n in range(first, first + calls):
        sid = f"CA{n:032x}"
        call = NewCall(call_sid=sid, caller="+34600111222", called="+34910000000")
        seq = 0
        for event in (None, KeysPressed(digits="1"), DialEnded(result=DialResult.NO_ANSWER)):
            arrival += INTERVAL
            await asyncio.sleep(max(0.0, arrival - loop.time()))
            if event is None:
                answer = await service.start(call)
            else:
                answer = await service.handle(call, seq, event)
            latencies.append((loop.time() - arrival) * 1000)
            assert answer.step is not None, answer.reply
            seq = answer.step.state.seq
    return latencies


async def measure(mode: str, folder: Path, calls: int, first: int) -> tuple[list[float], int]:
    """Step latencies while reloading in `mode` ('none', 'thread', 'loop'); reloads done."""
    library = FlowLibrary(load(folder))
    service = CallService(catalog=library, store=MemoryCallStore(600), renderer=RENDER)
    service.clock = lambda: OPEN
    reloader = FlowReloader(library, load=lambda: load(folder), folder=folder)
    reloads = 0
    stop = asyncio.Event()

    async def reload_loop(reload: Callable[[], object]) -> None:
        nonlocal reloads
        while not stop.is_set():
            result = reload()
            if asyncio.iscoroutine(result):
                await result
            reloads += 1
            await asyncio.sleep(0.05)

    task = None
    if mode == "thread":
        task = asyncio.create_task(reload_loop(reloader.reload))
    elif mode == "loop":
        task = asyncio.create_task(reload_loop(lambda: library.swap(load(folder))))
    await asyncio.sleep(0.01)
    latencies = await call_steps(service, calls, first)
    stop.set()
    if task is not None:
        await task
    return latencies, reloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    rounds, calls, passes = (5, 200, 1) if args.quick else (30, 700, 3)

    print("## Loading and checking a flow, by size\n")
    print("| nodes | p50 ms | p99 ms | ms per node (p50) |")
    print("|---:|---:|---:|---:|")
    costs = load_cost(rounds)
    for nodes, p50, p99 in costs:
        print(f"| {nodes} | {p50:.1f} | {p99:.1f} | {p50 / nodes:.3f} |")
    (small, small_p50, _), (large, large_p50, _) = costs[0], costs[-1]
    growth = (large_p50 / small_p50) / (large / small)
    print(f"\n{large / small:.0f}x the nodes cost {large_p50 / small_p50:.1f}x the time")
    print(f"(1.0 = linear growth; measured {growth:.2f})\n")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(ROOT / "flows" / "seguros.yaml", folder / "seguros.yaml")
        found: dict[str, list[tuple[float, float, int]]] = {"none": [], "thread": [], "loop": []}
        first = 0
        for _ in range(passes):
            for mode, runs in found.items():
                latencies, reloads = asyncio.run(measure(mode, folder, calls, first))
                first += calls
                runs.append((pct(latencies, 0.5), pct(latencies, 0.99), reloads))
        print("## Call steps while the flows reload (seguros, in-process store)\n")
        print("| reloads | steps | p50 ms | p99 ms | p99 / baseline | reloads done |")
        print("|---|---:|---:|---:|---:|---:|")
        base = statistics.median(p99 for _, p99, _ in found["none"])
        names = {
            "none": "none (baseline)",
            "thread": "every 50 ms, in a worker thread (flowpbx)",
            "loop": "every 50 ms, on the event loop (naive)",
        }
        for mode, runs in found.items():
            p50 = statistics.median(r[0] for r in runs)
            p99 = statistics.median(r[1] for r in runs)
            done = sum(r[2] for r in runs)
            print(
                f"| {names[mode]} | {calls * 3 * passes} | {p50:.3f} | {p99:.3f} | "
                f"{p99 / base:.2f} | {done} |"
            )


if __name__ == "__main__":
    main()
