"""The load generator of benchmarks/bench_webhooks.py: signed Twilio webhooks over keep-alive HTTP.

Run as its own process (bench_webhooks.py does this, pinned to its own core):

    python benchmarks/loadgen.py '{"base": "http://127.0.0.1:8000", "mode": "follow", ...}'

It takes one JSON argument (see Spec) and prints one JSON object (see Worker.result).

Before the clock starts it generates a pool of distinct calls: a unique CallSid, a caller, a
caller city and the keys the caller will press (1, 2 or 3 for a department; 4 then 1 and a policy
number, or 4 then 2, for the car-insurance submenu). Each of `connections` workers owns one
keep-alive HTTP/1.1 connection and plays calls one after another, one request in flight at a time:

- mode "follow" (flowpbx): POST the incoming-call webhook, then read each TwiML reply, take the
  first action URL in it (<Gather>, <Dial>, <Record>) and post the webhook Twilio would post
  there (Digits, DialCallStatus=no-answer, RecordingUrl...), until a reply has no action
  (the <Hangup/> after the voicemail). The open-hours and the closed (voicemail) branch of
  flows/seguros.yaml are both handled because nothing about the path is hard-coded.
- mode "script" (baseline): the same webhooks (same parameters, so the same body sizes), in the
  order the flowpbx call would send them for `branch`, all to the baseline's one URL.

Every request carries the X-Twilio-Signature that Twilio would send: `RequestValidator(token)
.compute_signature(url, params)` over the full URL and every form parameter. Each call's first
request is signed and encoded with the pool, before the clock starts; the others can only be
signed once the previous reply names their URL, so that happens between a reply and the next
request, outside the latency measured (write of the request to the last byte of the reply).

The HTTP client is a small asyncio protocol on uvloop rather than aiohttp, so that one client
core can outrun one server core; it speaks plain HTTP/1.1 with Content-Length bodies and refuses
anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import random
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote_plus, urlencode, urlsplit

import uvloop
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "5e" * 16
CALLED = "+34912345678"
MAX_STEPS = 12
"""A call that has not hung up after this many webhooks is an error (a loop in the flow)."""
SAMPLES = 8
"""Replies of each route kept for the report and parsed as XML."""
_ACTION = re.compile(rb'action="([^"]+)"')
_CITIES = (
    ("MADRID", "MADRID", "28013"),
    ("BARCELONA", "BARCELONA", "08002"),
    ("VALENCIA", "VALENCIA", "46002"),
    ("SEVILLA", "SEVILLA", "41004"),
    ("ZARAGOZA", "ZARAGOZA", "50001"),
    ("BILBAO", "VIZCAYA", "48001"),
)
PLANS: tuple[tuple[str, ...], ...] = (
    ("1",),
    ("2",),
    ("3",),
    ("4", "1", "12345678"),
    ("4", "2"),
)
"""What callers press at each <Gather>: a department, or the car menu and its options."""
Mode = Literal["follow", "script"]


@dataclass(frozen=True)
class Spec:
    """What to run (the JSON argument)."""

    base: str
    """http://127.0.0.1:PORT: the URL the server is configured to believe Twilio calls."""
    mode: Mode
    token: str
    connections: int
    warmup: float
    duration: float
    sid_prefix: str
    """8 hex digits, different for every load-generator process of a benchmark run."""
    calls: int
    """Size of the pre-generated pool of distinct calls; running out ends the run early."""
    path: str = "/api/calls/incoming"
    """The first webhook's path (mode script: the only path)."""
    branch: str = "open"
    """Mode script: the flowpbx branch whose webhook sequence to replay ('open' or 'closed')."""
    seed: int = 1
    watch: dict[str, int] = field(default_factory=dict)
    """Processes (name: pid) whose CPU time over the window to report, from /proc."""


class Params(dict[str, str]):
    """Form parameters. RequestValidator reads values through `getall` when a mapping has it (as
    for a MultiDict); a plain dict costs it two AttributeErrors per parameter, which would make
    signing the largest cost of the load generator."""

    def getall(self, name: str) -> list[str]:
        return [self[name]]


_quote = functools.lru_cache(maxsize=4096)(quote_plus)


def form_body(params: Mapping[str, str]) -> bytes:
    """application/x-www-form-urlencoded, as urlencode writes it (values cached when repeated)."""
    return "&".join([f"{name}={_quote(value)}" for name, value in params.items()]).encode()


class Signer:
    """Whole HTTP requests for one server, signed as Twilio signs them."""

    def __init__(self, token: str, host: str, port: int) -> None:
        self.validator: Any = RequestValidator(token)
        self.host = f"{host}:{port}"

    def request(self, url: str, params: Params, step: int) -> bytes:
        signature = cast(str, self.validator.compute_signature(url, params))
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        body = form_body(params)
        head = (
            f"POST {target} HTTP/1.1\r\n"
            f"Host: {self.host}\r\n"
            "User-Agent: TwilioProxy/1.1\r\n"
            "Accept: */*\r\n"
            "Cache-Control: max-age=259200\r\n"
            "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
            f"X-Twilio-Signature: {signature}\r\n"
            f"I-Twilio-Idempotency-Token: {params['CallSid'][2:]}-{step}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        )
        return head.encode() + body


@dataclass(frozen=True, slots=True)
class Call:
    """One pre-generated caller, with its first webhook already signed and encoded."""

    sid: str
    caller: str
    city: int
    plan: tuple[str, ...]
    suffix: str
    """Hex digits for the DialCallSid and RecordingSid of this call."""
    first: bytes = b""
    """The whole incoming-call request (mode follow) or first request (mode script)."""


def generate_calls(spec: Spec, signer: Signer | None = None) -> list[Call]:
    """`spec.calls` distinct calls: CallSid = CA + prefix + a counter, random callers and plans.

    With a signer, each call's first request is built now, before any clock starts.
    """
    rng = random.Random(spec.seed)
    if not re.fullmatch(r"[0-9a-f]{8}", spec.sid_prefix):
        raise ValueError(f"sid_prefix must be 8 lowercase hex digits, got {spec.sid_prefix!r}")
    calls = []
    for i in range(spec.calls):
        call = Call(
            sid=f"CA{spec.sid_prefix}{i:024x}",
            caller=f"+346{rng.randrange(10**8):08d}",
            city=rng.randrange(len(_CITIES)),
            plan=rng.choice(PLANS),
            suffix=f"{rng.getrandbits(128):032x}",
        )
        if signer is not None:
            first = signer.request(spec.base + spec.path, incoming_params(call), 0)
            call = dataclasses.replace(call, first=first)
        calls.append(call)
    return calls


def incoming_params(call: Call) -> Params:
    """The parameters of Twilio's incoming-call webhook (a Spanish mobile calling the line)."""
    city, state, zip_code = _CITIES[call.city]
    return Params(
        {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": call.sid,
            "CallStatus": "ringing",
            "Called": CALLED,
            "CalledCity": "MADRID",
            "CalledCountry": "ES",
            "CalledState": "MADRID",
            "CalledZip": "",
            "Caller": call.caller,
            "CallerCity": city,
            "CallerCountry": "ES",
            "CallerState": state,
            "CallerZip": zip_code,
            "Direction": "inbound",
            "From": call.caller,
            "FromCity": city,
            "FromCountry": "ES",
            "FromState": state,
            "FromZip": zip_code,
            "To": CALLED,
            "ToCity": "MADRID",
            "ToCountry": "ES",
            "ToState": "MADRID",
            "ToZip": "",
        }
    )


def step_params(base: Params, call: Call, kind: str, digits: str) -> Params:
    """The parameters Twilio posts to the action URL of a <Gather>, <Dial> or <Record>."""
    params = Params(base, CallStatus="in-progress")
    if kind == "gather":
        params.update(Digits=digits, FinishedOnKey="", msg="Gather End")
    elif kind == "dial":
        params.update(
            DialCallStatus="no-answer", DialCallSid="CA" + call.suffix, DialBridged="false"
        )
    elif kind == "record":
        recording = "RE" + call.suffix
        params.update(
            RecordingUrl=(
                f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording}"
            ),
            RecordingSid=recording,
            RecordingDuration="17",
            Digits="hangup",
        )
    else:
        raise ValueError(f"no webhook for route {kind!r}")
    return params


def script_kinds(call: Call, branch: str) -> list[str]:
    """The webhooks flowpbx's seguros flow receives for this call on `branch`."""
    if branch == "closed":
        return ["incoming", "record"]
    return ["incoming", *(["gather"] * len(call.plan)), "dial", "record"]


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes, bytes]] | None = None
        self.header_end = -1
        self.content_length = 0
        self.status = 0
        self.headers = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            reply = self._reply()
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if reply is not None:
            waiter.set_result(reply)

    def _reply(self) -> tuple[int, bytes, bytes] | None:
        if self.header_end < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = bytes(self.buffer[:end]).lower()
            if not head.startswith(b"http/1.1 "):
                raise ValueError(f"not an HTTP/1.1 reply: {head[:40]!r}")
            if b"transfer-encoding:" in head:
                raise ValueError("chunked replies are not supported")
            match = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            if match is None:
                raise ValueError("reply without Content-Length")
            self.status = int(head[9:12])
            self.headers = head
            self.content_length = int(match.group(1))
            self.header_end = end + 4
        total = self.header_end + self.content_length
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[self.header_end : total])
        del self.buffer[:total]
        self.header_end = -1
        return self.status, self.headers, body

    async def request(self, data: bytes) -> tuple[int, bytes, bytes]:
        """Send a whole request; the status, lower-cased head and body of the reply."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Worker:
    """The shared state of the workers of one run, and their tallies."""

    spec: Spec
    calls: Iterator[Call]
    signer: Signer
    host: str
    port: int
    window_start: float = 0.0
    window_end: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    not_twiml: int = 0
    apologies: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    calls_done: int = 0
    calls_started: int = 0
    requests_total: int = 0
    exhausted: bool = False
    samples: dict[str, list[str]] = field(default_factory=dict)

    def check(self, kind: str, status: int, head: bytes, body: bytes) -> None:
        self.statuses[status] += 1
        self.routes[kind] += 1
        twiml = (
            b"content-type: application/xml" in head
            and body.startswith(b"<?xml")
            and b"<Response>" in body[:80]
        )
        if not twiml:
            self.not_twiml += 1
        if b"Lo sentimos" in body:
            self.apologies += 1
        kept = self.samples.setdefault(kind, [])
        if len(kept) < SAMPLES:
            kept.append(body.decode("utf-8", "replace"))

    async def run_call(self, conn: HttpConnection, call: Call) -> bool:
        """Play one call; False when the run's time is up."""
        base = incoming_params(call)
        kinds = script_kinds(call, self.spec.branch) if self.spec.mode == "script" else []
        url = self.spec.base + self.spec.path
        kind = "incoming"
        pressed = iter(call.plan)
        self.calls_started += 1
        for step in range(MAX_STEPS):
            if self.spec.mode == "script":
                kind = kinds[step]
            if step == 0:
                data = call.first
            else:
                digits = next(pressed, "") if kind == "gather" else ""
                data = self.signer.request(url, step_params(base, call, kind, digits), step)
            started = time.perf_counter()
            if started >= self.window_end:
                return False
            status, head, body = await conn.request(data)
            ended = time.perf_counter()
            self.requests_total += 1
            if self.window_start <= started and ended <= self.window_end:
                self.latencies.append(ended - started)
                self.check(kind, status, head, body)
            elif status != 200:
                self.statuses[status] += 1
            if self.spec.mode == "script":
                if step + 1 == len(kinds):
                    break
                continue
            match = _ACTION.search(body)
            if status != 200 or match is None:
                break
            url = match.group(1).decode().replace("&amp;", "&")
            kind = urlsplit(url).path.rsplit("/", 1)[-1]
        else:
            self.errors["call did not end"] += 1
        self.calls_done += 1
        return True

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(HttpConnection, self.host, self.port)
        try:
            for call in self.calls:
                if not await self.run_call(conn, call):
                    return
            self.exhausted = True
        except Exception as exc:
            self.errors[f"{type(exc).__name__}: {exc}"] += 1
        finally:
            conn.close()

    def result(self, wall: float, cpu: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        xml_ok = 0
        for bodies in self.samples.values():
            for text in bodies:
                with contextlib.suppress(ET.ParseError):
                    xml_ok += ET.fromstring(text).tag == "Response"
        return {
            "connections": self.spec.connections,
            "mode": self.spec.mode,
            "window_s": wall,
            "requests": len(lat),
            "rps": len(lat) / wall,
            "p50_ms": _percentile(lat, 50) * 1000,
            "p90_ms": _percentile(lat, 90) * 1000,
            "p99_ms": _percentile(lat, 99) * 1000,
            "max_ms": (lat[-1] if lat else 0.0) * 1000,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "routes": dict(sorted(self.routes.items())),
            "not_twiml": self.not_twiml,
            "apologies": self.apologies,
            "errors": dict(self.errors),
            "calls_started": self.calls_started,
            "calls_done": self.calls_done,
            "requests_total": self.requests_total,
            "pool_exhausted": self.exhausted,
            "samples_xml_ok": xml_ok,
            "samples_total": sum(len(b) for b in self.samples.values()),
            "samples": {k: v[:1] for k, v in self.samples.items()},
            "client_cpu_s": cpu,
            "client_cpu_share": cpu / wall if wall else 0.0,
        }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far (0.0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


async def run(spec: Spec) -> dict[str, Any]:
    parts = urlsplit(spec.base)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise ValueError(f"the load generator only talks to 127.0.0.1:PORT, not {spec.base!r}")
    signer = Signer(spec.token, parts.hostname, parts.port)
    check = incoming_params(generate_calls(dataclasses.replace(spec, calls=1))[0])
    if form_body(check) != urlencode(check).encode():
        raise AssertionError("form_body does not encode as urlencode does")
    pool = generate_calls(spec, signer)
    work = Worker(spec, iter(pool), signer, parts.hostname, parts.port)
    now = time.perf_counter()
    work.window_start = now + spec.warmup
    work.window_end = work.window_start + spec.duration
    tasks = [asyncio.create_task(work.worker()) for _ in range(spec.connections)]
    await asyncio.sleep(max(0.0, work.window_start - time.perf_counter()))
    watched = {name: _cpu_seconds(pid) for name, pid in spec.watch.items()}
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    await asyncio.sleep(max(0.0, work.window_end - time.perf_counter()))
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    used = {name: _cpu_seconds(pid) - watched[name] for name, pid in spec.watch.items()}
    # Requests in flight at the end of the window are not counted; give them a moment to finish.
    _, pending = await asyncio.wait(tasks, timeout=5.0)
    for task in pending:
        task.cancel()
        work.errors["request still running 5 s after the window"] += 1
    result = work.result(spec.duration, cpu)
    result["window_measured_s"] = wall
    result["cpu_share"] = {name: seconds / wall for name, seconds in used.items()}
    return result


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: loadgen.py SPEC_JSON")
    spec = Spec(**json.loads(sys.argv[1]))
    result = uvloop.run(run(spec))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
