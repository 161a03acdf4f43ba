"""The flows a service runs, which dialled number uses which, their config values, and the
queues they declare."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from flowpbx.errors import FlowError, FlowpbxError, Problem
from flowpbx.language.checks import config_uses, queue_config_uses
from flowpbx.language.flow import CONFIG_REFERENCE, Flow, QueueSpec, resolve_config
from flowpbx.language.loader import check_bytes, flow_files
from flowpbx.language.queue_specs import conflict
from flowpbx.language.schema import matches
from flowpbx.language.yamlsource import Path as ValuePath


class CatalogError(FlowpbxError):
    """Flows that cannot be served: invalid files, unknown names, missing config values."""


@dataclass(frozen=True)
class LoadedFlow:
    """A flow with its version (a hash of its text, kept in each call's state) and config."""

    flow: Flow
    version: str
    config: Mapping[str, str]
    text: bytes = b""
    """The file's text as checked, so that other processes can run the calls on this version
    after the file has changed (empty for flows built in memory)."""


class Catalog(Protocol):
    """What the service reads from the flows it runs: a FlowCatalog, or a FlowLibrary whose
    flows change while it runs."""

    @property
    def flows(self) -> Mapping[str, LoadedFlow]: ...

    @property
    def default(self) -> str: ...

    @property
    def default_flow(self) -> LoadedFlow: ...

    @property
    def queues(self) -> Mapping[str, QueueSpec]: ...

    @property
    def serving_queues(self) -> Mapping[str, QueueSpec]:
        """The queues callers may be waiting in: `queues`, and those of earlier versions that
        calls may still be on."""
        ...

    def for_number(self, called: str) -> LoadedFlow: ...

    def get(self, name: str) -> LoadedFlow | None: ...

    def find(self, name: str, version: str) -> LoadedFlow | None: ...


@dataclass(frozen=True)
class FlowCatalog:
    flows: Mapping[str, LoadedFlow]
    numbers: Mapping[str, str]
    default: str

    def for_number(self, called: str) -> LoadedFlow:
        """The flow for a dialled number (the To parameter), or the default flow."""
        return self.flows[self.numbers.get(called, self.default)]

    def get(self, name: str) -> LoadedFlow | None:
        return self.flows.get(name)

    def find(self, name: str, version: str) -> LoadedFlow | None:
        """The flow `name` at `version`, if that is the version loaded."""
        loaded = self.flows.get(name)
        return loaded if loaded is not None and loaded.version == version else None

    @property
    def default_flow(self) -> LoadedFlow:
        return self.flows[self.default]

    @cached_property
    def queues(self) -> Mapping[str, QueueSpec]:
        """Every queue the flows declare, by name. A queue may be declared by several flows
        (load_catalog makes sure they agree); the first flow's declaration is kept."""
        return MappingProxyType(merge_queues(loaded.flow for loaded in self.flows.values())[0])

    @property
    def serving_queues(self) -> Mapping[str, QueueSpec]:
        return self.queues


def merge_queues(flows: Iterable[Flow]) -> tuple[dict[str, QueueSpec], list[str]]:
    """The queues of `flows` by name, and a message for each queue that a later flow declares
    with other settings, naming both places (file:line)."""
    merged: dict[str, QueueSpec] = {}
    where: dict[str, str] = {}
    problems: list[str] = []
    for flow in flows:
        for name, spec in flow.queues.items():
            if name not in merged:
                merged[name], where[name] = spec, flow.source
                continue
            message = conflict(where[name], merged[name], spec)
            if message is not None:
                problems.append(f"{flow.source}:{spec.mark.line}: {message}")
    return merged, problems


def _config_uses(flow: Flow) -> Iterator[tuple[str, ValuePath, str]]:
    """Every value of the flow that may use ${NAME}: (who uses it, path in it, value)."""
    for node in flow.nodes.values():
        for path, written in config_uses(node):
            yield f"node '{node.id}'", path, written
    for queue in flow.queues.values():
        for path, written in queue_config_uses(queue):
            yield f"queue '{queue.name}'", path, written


def _config(flow: Flow, lookup: Callable[[str], str | None]) -> tuple[dict[str, str], list[str]]:
    """The flow's config values (the environment wins), and what is wrong with them."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for name, default in flow.config.items():
        value = lookup(name) or default
        if value is None:
            problems.append(f"config {name} has no value; set the environment variable {name}")
        else:
            values[name] = value
    # A value from the environment is checked like one written in the flow, before any call.
    for who, path, written in _config_uses(flow):
        names = CONFIG_REFERENCE.findall(written)
        if not names or any(name not in values for name in names):
            continue
        resolved = resolve_config(written, values)
        kind = "phone_target" if path[0] in ("to", "caller_id") else "audio_url"
        if not matches(kind, resolved):
            expected = (
                "an http(s) address"
                if kind == "audio_url"
                else ("a phone number like +34910000000, client:name or sip:user@host")
            )
            problems.append(
                f"config {', '.join(names)} makes {who} use {resolved!r}; expected {expected}"
            )
    return values, problems


def flow_version(raw: bytes) -> str:
    """A flow text's version: the start of its SHA-256, kept in the state of each call."""
    return hashlib.sha256(raw).hexdigest()[:12]


def load_text(
    raw: bytes, file: str, lookup: Callable[[str], str | None]
) -> tuple[LoadedFlow, list[str]]:
    """A flow's text with its config values, and what is wrong with them; FlowError if the
    flow itself is invalid."""
    report = check_bytes(raw, file)
    if report.flow is None:
        raise FlowError(report.problems)
    config, config_problems = _config(report.flow, lookup)
    # Calls remember the version of the text that was checked, not a later read of it.
    return LoadedFlow(report.flow, flow_version(raw), config, raw), config_problems


def _load(path: Path, lookup: Callable[[str], str | None]) -> tuple[LoadedFlow, list[str]]:
    return load_text(path.read_bytes(), str(path), lookup)


def load_one(path: Path, lookup: Callable[[str], str | None]) -> FlowCatalog:
    """A catalog of the one flow in `path` (for running it alone, as `flowpbx simulate` does)."""
    if not path.is_file():
        raise CatalogError(f"no flow file {path}")
    loaded, found = _load(path, lookup)
    if found:
        raise CatalogError(f"cannot run {path}:\n  " + "\n  ".join(map(str, found)))
    return FlowCatalog({loaded.flow.name: loaded}, {}, loaded.flow.name)


def load_catalog(
    flows_dir: Path,
    *,
    numbers: Mapping[str, str],
    default: str,
    phone_number: str,
    lookup: Callable[[str], str | None],
) -> FlowCatalog:
    """Load and check every flow under `flows_dir`; any problem stops the start.

    The default flow is FLOWPBX_DEFAULT_FLOW, else the one FLOWPBX_NUMBERS gives the account's
    TWILIO_PHONE_NUMBER, else the only flow; with several flows it must be named.
    """
    if not flows_dir.is_dir():
        raise CatalogError(f"flows folder {flows_dir} does not exist")
    files = flow_files([flows_dir])
    if not files:
        raise CatalogError(f"no flow files (*.yaml, *.yml) in {flows_dir}")
    flows: dict[str, LoadedFlow] = {}
    invalid: list[Problem] = []
    problems: list[str] = []
    for path in files:
        try:
            loaded, found = _load(path, lookup)
        except FlowError as exc:
            invalid.extend(exc.problems)
            continue
        if loaded.flow.name in flows:
            other = flows[loaded.flow.name].flow.source
            problems.append(
                f"{path}: flow name '{loaded.flow.name}' is already used by {other}; "
                "each flow needs its own name"
            )
            continue
        problems.extend(f"{path}: {problem}" for problem in found)
        flows[loaded.flow.name] = loaded
    if invalid:
        raise FlowError(invalid)
    problems.extend(merge_queues(loaded.flow for loaded in flows.values())[1])
    default = default or numbers.get(phone_number, "")
    if not default and len(flows) == 1:
        default = next(iter(flows))
    if not default:
        problems.append(
            f"FLOWPBX_DEFAULT_FLOW is not set: with several flows ({', '.join(sorted(flows))}) "
            "say which one answers numbers not listed in FLOWPBX_NUMBERS"
        )
    elif default not in flows:
        problems.append(f"FLOWPBX_DEFAULT_FLOW: no flow is named '{default}'")
    problems.extend(
        f"FLOWPBX_NUMBERS: {number} uses flow '{name}', which does not exist"
        for number, name in numbers.items()
        if name not in flows
    )
    if problems:
        raise CatalogError("cannot serve these flows:\n  " + "\n  ".join(problems))
    return FlowCatalog(flows, dict(numbers), default)
