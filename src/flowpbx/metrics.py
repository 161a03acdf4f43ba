"""Prometheus metrics: what each process counts, and the shared state read at scrape time.

Counters and histograms are recorded by the process that sees the event (a webhook, a step,
a request to Twilio). With several worker processes they go to files in
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode) and `/metrics` sums every
process's files, so any worker answers for all of them. Without the variable they live in
this process's registry.

Gauges that describe shared state (active calls, queues, agents, the history backlog,
readiness) are not recorded at all: `/metrics` reads them from Redis and the database when it
is scraped (`Snapshot`), so every process behind the load balancer reports the same,
whole-system values, never summed across workers.

Labels never carry a CallSid or a phone number: routes, flows, node kinds, queues, statuses
and operations are few.

Recording never fails what is recorded: a metric that cannot be written (the shared folder
removed, a disk that fails or is full) is left out, and said in the log once in a while
(`_Failures`), while the webhook, the step or the request to Twilio goes on. For a full disk
that takes `_AllocatedMmapedDict`: prometheus_client's files would otherwise kill the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import prometheus_client
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    mmap_dict,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.mmap_dict import MmapedDict

from flowpbx.errors import FlowpbxError

log = logging.getLogger("flowpbx.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text exposition format every Prometheus 2.x and 3.x reads."""
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
"""Seconds: a webhook takes milliseconds; 5 s is the call store's retry time, 15 s Twilio's
own timeout."""

# *_created series: noise for these counters (the library's function is not annotated).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


_INITIAL_SIZE: int = mmap_dict._INITIAL_MMAP_SIZE
"""The size prometheus_client gives a new metric file."""


class _AllocatedMmapedDict(MmapedDict):
    """prometheus_client's metric file (multiprocess mode), its disk blocks allocated before
    they are mapped.

    prometheus_client makes each file sparse (`truncate` to 64 KiB, doubled with `truncate`
    when full) and writes it through `mmap`: on a full filesystem the first write to a page
    that has no block is a SIGBUS, which no `except` catches, and the worker dies mid-webhook
    (its callers dropped). With the blocks allocated first (`posix_fallocate`) a full disk is
    an OSError where the file is opened or grown, which `_recording` logs and leaves out."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            _allocated(filename)
        super().__init__(filename, read_mode)  # type: ignore[no-untyped-call]

    def _init_value(self, key: str) -> None:
        # The parent doubles the capacity until the new entry fits, then truncates the file to
        # it: the blocks of that size are allocated first (truncate to the size the file has
        # then changes nothing).
        encoded = key.encode("utf-8")
        entry = 4 + len(encoded) + (8 - (len(encoded) + 4) % 8) + 16
        capacity: int = self._capacity
        while self._used + entry > capacity:
            capacity *= 2
        if capacity != self._capacity:
            _allocate(self._f.fileno(), capacity)
        super()._init_value(key)  # type: ignore[no-untyped-call]


def _allocated(filename: str) -> None:
    """The metric file `filename` with its blocks allocated, `_INITIAL_SIZE` bytes at least.
    A new one is made under another name and renamed once allocated: `/metrics` never reads it
    empty (which prometheus_client cannot parse), and a full disk leaves none behind. Raises
    OSError."""
    try:
        fd = os.open(filename, os.O_RDWR)
    except FileNotFoundError:
        pass
    else:
        try:
            _allocate(fd, max(os.fstat(fd).st_size, _INITIAL_SIZE))
        finally:
            os.close(fd)
        return
    making = filename + ".new"  # not *.db: not read by /metrics, nor cleaned at the start
    try:
        with open(making, "wb") as file:
            _allocate(file.fileno(), _INITIAL_SIZE)
        os.replace(making, filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(making)
        raise


def _allocate(fd: int, size: int) -> None:
    """Disk blocks for the first `size` bytes of the file `fd` (its size made at least `size`).
    Raises OSError (ENOSPC) when the filesystem has no room."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
        return
    # No posix_fallocate (macOS): zeros written past the end are allocated as well.
    end = os.fstat(fd).st_size
    if end < size:
        os.pwrite(fd, bytes(size - end), end)


if getattr(values.ValueClass, "_multiprocess", False):
    # Multiprocess mode: `values.MultiProcessValue` looks the name up each time it opens a
    # file, so every metric file of this process is made by the class above.
    values.MmapedDict = _AllocatedMmapedDict  # type: ignore[attr-defined]

WEBHOOK_SECONDS = Histogram(
    "flowpbx_webhook_duration_seconds",
    "Time to answer a Twilio webhook, from its first byte to the answer, by route.",
    ["route"],
    buckets=WEBHOOK_BUCKETS,
)
WEBHOOK_RESPONSES = Counter(
    "flowpbx_webhook_responses",
    "Twilio webhooks answered, by route and HTTP status (voice webhooks answer 200 even when "
    "the caller hears an apology: see flowpbx_fallbacks_total).",
    ["route", "status"],
)
STEPS = Counter(
    "flowpbx_steps",
    "Steps calls took (webhooks that moved a call on), by flow and the kind of node the call "
    "waits at afterwards.",
    ["flow", "kind"],
)
FALLBACKS = Counter(
    "flowpbx_fallbacks",
    "Webhooks answered with a fallback instead of the flow's next step (the apology, a plain "
    "goodbye, or a queued caller holding on), by flow and reason.",
    ["flow", "reason"],
)
TWILIO_REQUESTS = Counter(
    "flowpbx_twilio_requests",
    "Requests made to Twilio's REST API, by operation.",
    ["operation"],
)
TWILIO_ERRORS = Counter(
    "flowpbx_twilio_errors",
    "Requests to Twilio's REST API that failed, by operation and error: refused (Twilio "
    "answered an error) or unreachable (no answer in time, or no connection).",
    ["operation", "error"],
)


class MetricsSetupError(FlowpbxError):
    """The directory for several processes' metrics cannot be used."""


FAILURE_LOG_SECONDS = 300.0
"""How often at most a kind of metric that cannot be recorded is said in the log."""


class _Failures:
    """Metric writes that failed, said in the log once per kind (webhooks, steps...) and then
    at most every `every` seconds, with how many were left out meanwhile: a folder that is gone
    fails every webhook's metrics, and one line per webhook would drown the log."""

    def __init__(
        self, every: float = FAILURE_LOG_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every = every
        self.clock = clock
        self._said: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def failed(self, kind: str, exc: Exception) -> None:
        left_out = self._left_out.get(kind, 0) + 1
        now = self.clock()
        said = self._said.get(kind)
        if said is not None and now - said < self.every:
            self._left_out[kind] = left_out
            return
        self._said[kind] = now
        self._left_out[kind] = 0
        log.error(
            "metrics: %s cannot be recorded (%s: %s); left out, and the calls go on (%d "
            "left out since this was last said; said again in %d s at the soonest)",
            kind,
            type(exc).__name__,
            exc,
            left_out,
            self.every,
        )


_FAILURES = _Failures()


@contextlib.contextmanager
def _recording(kind: str) -> Iterator[None]:
    """Record metrics of `kind` in the block; an exception there is logged (`_Failures`),
    never raised."""
    try:
        yield
    except Exception as exc:
        _FAILURES.failed(kind, exc)


class CallMetrics:
    """The engine's `CallObserver`: steps and fallbacks as counters. Never raises."""

    def stepped(self, flow: str, kind: str) -> None:
        with _recording("steps"):
            STEPS.labels(flow, kind).inc()

    def fell_back(self, flow: str, reason: str) -> None:
        with _recording("fallbacks"):
            FALLBACKS.labels(flow, str(reason)).inc()


def webhook_answered(route: str, status: int, seconds: float) -> None:
    """One webhook answered: its latency and its status. Never raises."""
    with _recording("webhooks"):
        WEBHOOK_SECONDS.labels(route).observe(seconds)
        WEBHOOK_RESPONSES.labels(route, str(status)).inc()


def twilio_request(operation: str, error: str | None = None) -> None:
    """One request to Twilio's REST API; `error` 'refused' or 'unreachable' if it failed.
    Never raises."""
    with _recording("twilio requests"):
        TWILIO_REQUESTS.labels(operation).inc()
        if error is not None:
            TWILIO_ERRORS.labels(operation, error).inc()


# -- several processes --


def prepare_multiprocess(path: str | os.PathLike[str]) -> Path:
    """Make `path` the metrics directory of the worker processes about to start: created if
    missing, emptied of the `*.db` files that processes no longer running left (an earlier
    run's: their counts would be added to this run's), and named in PROMETHEUS_MULTIPROC_DIR
    for the processes started after this. The files of live processes are kept: should a
    server be running on the folder (a second `flowpbx serve` started on its port by mistake),
    its counts stay. Those bearing this process's id go: it has recorded nothing yet, so they
    are an earlier process's that had the same id (pid 1 of a container started again).

    Call it once, in the process that starts the workers, before any starts: a worker decides
    where its metrics go when it first imports prometheus_client. Raises MetricsSetupError."""
    directory = _made(Path(path))
    try:
        for left in directory.glob("*.db"):
            writer = _writer(left)
            if writer == os.getpid() or not _alive(writer):
                left.unlink(missing_ok=True)
    except OSError as exc:
        raise _unusable(directory, exc) from exc
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def prepare_own_metrics() -> Path | None:
    """For one `flowpbx serve` process with PROMETHEUS_MULTIPROC_DIR set (its metrics in files,
    as a worker's): the folder made and emptied of an earlier run's files, as for workers
    (`prepare_multiprocess`). None, and nothing done, without the variable."""
    path = os.environ.get(MULTIPROC_ENV)
    return prepare_multiprocess(path) if path else None


def _writer(path: Path) -> int | None:
    """The process that wrote a metric file: prometheus_client names them `<type>_<pid>.db`
    (`gauge_<mode>_<pid>.db`). None when the name says none."""
    pid = path.stem.rpartition("_")[2]
    return int(pid) if pid.isdigit() else None


def _alive(pid: int | None) -> bool:
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # another user's
    except OSError:
        return False
    return True


def _made(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(directory, exc) from exc
    return directory


def _unusable(directory: Path, exc: OSError) -> MetricsSetupError:
    return MetricsSetupError(
        f"{MULTIPROC_ENV}={str(directory)!r} cannot hold metric files "
        f"({exc.strerror or exc}): expected a directory this user may write"
    )


def worker_exited(pid: int) -> None:
    """Bookkeeping for a worker process that exited (prometheus_client's `mark_process_dead`):
    its counters stay counted, its live gauges (none today) go. For the supervisor, whose own
    metrics need not be in the directory: it goes by PROMETHEUS_MULTIPROC_DIR alone."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def multiprocess_dir() -> Path | None:
    """Where this process's metrics are shared with the other workers', or None when they
    are its own (PROMETHEUS_MULTIPROC_DIR was not set when prometheus_client was imported)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path or not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return Path(path)


def counters() -> bytes:
    """The counters and histograms in the text format: every worker's summed in
    multiprocess mode, else this process's (with its process_* and python_* metrics).

    A multiprocess folder that is gone (removed under the running server) is made again, and
    what it holds rendered: /metrics keeps answering, with the shared state. The kinds of
    metrics the processes had recorded before the removal go on to the removed files until
    the server restarts: their counts are lost, and not said (`_recording` sees no error)."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(REGISTRY)
    if not directory.is_dir():
        try:
            _made(directory)
        except MetricsSetupError as exc:
            _FAILURES.failed("the metrics folder", exc)
            return b""
        log.warning(
            "metrics: the folder %s was gone and is made again: the counts the processes "
            "record meanwhile in the removed files are lost until flowpbx serve restarts",
            directory,
        )
    registry = CollectorRegistry()
    try:
        multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    except (ValueError, FileNotFoundError):
        if directory.is_dir():
            raise
        return b""  # removed again meanwhile: the next scrape makes it


# -- the shared state, read at scrape time --


@dataclass(frozen=True, slots=True)
class QueueNow:
    callers: int
    """Places waiting (callers on hold and callbacks), not those an agent has."""
    longest_wait: float
    """Seconds the place waiting longest has waited (0 when none waits)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Shared state as read for one scrape. None: it could not be read (its series are left
    out of that scrape, rather than reported as 0)."""

    ready: Mapping[str, bool] = field(default_factory=dict)
    """The readiness checks that gave a verdict (`health.verdicts`)."""
    active_calls: int | None = None
    queues: Mapping[str, QueueNow] | None = None
    agents: Mapping[str, int] | None = None
    """Agents by status, each agent once."""
    queue_agents: Mapping[str, Mapping[str, int]] | None = None
    """Queue -> the agents serving it, by status."""
    backlog_entries: int | None = None
    backlog_age: float | None = None
    """Seconds the oldest entry has waited (0 when none waits)."""
    backlog_limit: int | None = None


class _Families:
    """A collector of families made beforehand (collect() cannot await)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def _gauge(name: str, help_text: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, labels=list(labels))


def _single(name: str, help_text: str, value: float | None) -> list[Metric]:
    """A gauge of one value without labels; none when the value could not be read."""
    if value is None:
        return []
    gauge = _gauge(name, help_text)
    gauge.add_metric([], value)
    return [gauge]


def state_families(snapshot: Snapshot) -> list[Metric]:
    """The gauges of a snapshot."""
    families: list[Metric] = []
    ready = _gauge(
        "flowpbx_ready",
        "Readiness checks as /readyz makes them: 1 passing, 0 failing; a check that could "
        "not look (the backlog while Redis does not answer) is left out.",
        ("check",),
    )
    for check, ok in sorted(snapshot.ready.items()):
        ready.add_metric([check], 1.0 if ok else 0.0)
    families.append(ready)
    families += _single(
        "flowpbx_active_calls",
        "Calls in progress across every process (started, and not yet reported ended by Twilio).",
        snapshot.active_calls,
    )
    if snapshot.queues is not None:
        callers = _gauge(
            "flowpbx_queue_callers",
            "Places waiting in a queue (callers on hold and callbacks), by queue.",
            ("queue",),
        )
        longest = _gauge(
            "flowpbx_queue_longest_wait_seconds",
            "How long the place waiting longest in a queue has waited, by queue (0: empty).",
            ("queue",),
        )
        for queue, now in sorted(snapshot.queues.items()):
            callers.add_metric([queue], now.callers)
            longest.add_metric([queue], now.longest_wait)
        families += [callers, longest]
    if snapshot.agents is not None:
        agents = _gauge("flowpbx_agents", "Agents by status, each agent once.", ("status",))
        for status, count in sorted(snapshot.agents.items()):
            agents.add_metric([status], count)
        families.append(agents)
    if snapshot.queue_agents is not None:
        serving = _gauge(
            "flowpbx_queue_agents",
            "The agents serving a queue, by queue and status.",
            ("queue", "status"),
        )
        for queue, by_status in sorted(snapshot.queue_agents.items()):
            for status, count in sorted(by_status.items()):
                serving.add_metric([queue, status], count)
        families.append(serving)
    families += _single(
        "flowpbx_history_backlog_entries",
        "Call events and callbacks waiting for the database (call history).",
        snapshot.backlog_entries,
    )
    families += _single(
        "flowpbx_history_backlog_age_seconds",
        "How long the oldest entry of the history backlog has waited (0: none waits).",
        snapshot.backlog_age,
    )
    families += _single(
        "flowpbx_history_backlog_limit_entries",
        "Entries the call store keeps at most for call history; past it the oldest are "
        "dropped (FLOWPBX_EVENTS_MAX).",
        snapshot.backlog_limit,
    )
    return families


def render_state(snapshot: Snapshot) -> bytes:
    """The gauges of a snapshot in the text format."""
    registry = CollectorRegistry()
    registry.register(_Families(state_families(snapshot)))
    return generate_latest(registry)


# A process started with PROMETHEUS_MULTIPROC_DIR naming a folder that is not there would fail
# at its first metric, inside a webhook: make it now (`prepare_multiprocess` empties it first
# when a supervisor starts workers). A folder that cannot be made does not fail the import:
# `flowpbx serve` says so in one line when it prepares the folder (`prepare_own_metrics`,
# `prepare_multiprocess`), and elsewhere the metrics are left out as any that cannot be written.
if (_shared := multiprocess_dir()) is not None:
    with contextlib.suppress(MetricsSetupError):
        _made(_shared)
