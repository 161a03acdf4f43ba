"""The flows a service runs, which dialled number uses which, and their config values."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flowpbx.errors import FlowError, FlowpbxError
from flowpbx.flow import Flow
from flowpbx.loader import check_file, flow_files


class CatalogError(FlowpbxError):
    """Flows that cannot be served: invalid files, unknown names, missing config values."""


@dataclass(frozen=True)
class LoadedFlow:
    """A flow with the version (content hash) calls are pinned to and its config values."""

    flow: Flow
    version: str
    config: Mapping[str, str]


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

    @property
    def default_flow(self) -> LoadedFlow:
        return self.flows[self.default]


def _config(flow: Flow, lookup: Callable[[str], str | None]) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, default in flow.config.items():
        value = lookup(name) or default
        if value is None:
            missing.append(name)
        else:
            values[name] = value
    return values, missing


def load_catalog(
    flows_dir: Path,
    *,
    numbers: Mapping[str, str],
    default: str,
    phone_number: str,
    lookup: Callable[[str], str | None],
) -> FlowCatalog:
    """Load and check every flow under `flows_dir`; any problem stops the start."""
    if not flows_dir.is_dir():
        raise CatalogError(f"flows folder {flows_dir} does not exist")
    files = flow_files([flows_dir])
    if not files:
        raise CatalogError(f"no flow files (*.yaml, *.yml) in {flows_dir}")
    flows: dict[str, LoadedFlow] = {}
    problems: list[str] = []
    for path in files:
        report = check_file(path)
        if report.flow is None:
            raise FlowError(report.problems)
        flow = report.flow
        if flow.name in flows:
            problems.append(f"{path}: flow name '{flow.name}' is used by two files")
            continue
        config, missing = _config(flow, lookup)
        problems.extend(
            f"{path}: config {name} has no value; set the environment variable {name}"
            for name in missing
        )
        version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        flows[flow.name] = LoadedFlow(flow, version, config)
    if not default:
        default = numbers.get(phone_number) or ("seguros" if "seguros" in flows else min(flows))
    if default not in flows:
        problems.append(f"FLOWPBX_DEFAULT_FLOW: no flow is named '{default}'")
    problems.extend(
        f"FLOWPBX_NUMBERS: {number} uses flow '{name}', which does not exist"
        for number, name in numbers.items()
        if name not in flows
    )
    if problems:
        raise CatalogError("cannot serve these flows:\n  " + "\n  ".join(problems))
    return FlowCatalog(flows, dict(numbers), default)
