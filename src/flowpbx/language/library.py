"""The flows a running service serves now, and the earlier versions its calls started on.

A reload swaps the whole catalog at once; a call stays on the version of its flow it started
with until it ends, so versions replaced by a reload are kept (the most recent `keep` of them).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flowpbx.errors import FlowpbxError
from flowpbx.language.catalog import FlowCatalog, LoadedFlow, load_text
from flowpbx.language.flow import QueueSpec

KEEP_VERSIONS = 256
"""Replaced versions kept in memory (a flow is a few kilobytes). A call on a version no longer
kept is run on the text the store keeps for it, or else on the current version."""


@dataclass(frozen=True, slots=True)
class Change:
    """What a reload changed for one flow: `before` or `after` is '' when it was added or
    removed."""

    flow: str
    before: str
    after: str

    def __str__(self) -> str:
        if not self.before:
            return f"{self.flow} added (version {self.after})"
        if not self.after:
            return f"{self.flow} removed (calls on it finish on version {self.before})"
        return f"{self.flow} {self.before} -> {self.after}"


@dataclass
class FlowLibrary:
    """The current catalog (swapped whole by a reload) and the versions calls may still use.

    It reads like a FlowCatalog, always the current one; `find` also knows earlier versions.
    """

    current: FlowCatalog
    lookup: Callable[[str], str | None] = lambda _: None
    """Config values from the environment, for versions revived from their text."""
    keep: int = KEEP_VERSIONS
    _versions: OrderedDict[tuple[str, str], LoadedFlow] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _retired: dict[str, QueueSpec] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for loaded in self.current.flows.values():
            self.remember(loaded)

    # -- reading, as a FlowCatalog --

    @property
    def flows(self) -> Mapping[str, LoadedFlow]:
        return self.current.flows

    @property
    def default(self) -> str:
        return self.current.default

    @property
    def default_flow(self) -> LoadedFlow:
        return self.current.default_flow

    @property
    def queues(self) -> Mapping[str, QueueSpec]:
        return self.current.queues

    @property
    def serving_queues(self) -> Mapping[str, QueueSpec]:
        """The current queues, and the queues a reload removed (or renamed) while calls on an
        earlier version may still wait in them: the queue engine keeps offering those
        callers to agents."""
        if self._retired is None:
            current = self.current.queues
            merged = dict(current)
            for loaded in reversed(self._versions.values()):  # the latest declaration first
                for name, spec in loaded.flow.queues.items():
                    merged.setdefault(name, spec)
            self._retired = merged
        return self._retired

    def for_number(self, called: str) -> LoadedFlow:
        return self.current.for_number(called)

    def get(self, name: str) -> LoadedFlow | None:
        return self.current.get(name)

    def find(self, name: str, version: str) -> LoadedFlow | None:
        """The flow `name` at `version`: the current one or one this process kept."""
        found = self.current.find(name, version)
        if found is not None:
            return found
        kept = self._versions.get((name, version))
        if kept is not None:
            self._versions.move_to_end((name, version))
        return kept

    # -- changing --

    def remember(self, loaded: LoadedFlow) -> None:
        """Keep a version for the calls on it (the oldest unused one goes past `keep`)."""
        key = (loaded.flow.name, loaded.version)
        self._versions[key] = loaded
        self._versions.move_to_end(key)
        while len(self._versions) > self.keep:
            self._versions.popitem(last=False)
        self._retired = None

    def swap(self, catalog: FlowCatalog) -> list[Change]:
        """Serve `catalog` from now on (one assignment: a webhook sees the old catalog or the
        new one, never a mix); what changed, flow by flow."""
        before = {name: loaded.version for name, loaded in self.current.flows.items()}
        after = {name: loaded.version for name, loaded in catalog.flows.items()}
        for loaded in catalog.flows.values():
            self.remember(loaded)
        self.current = catalog
        self._retired = None
        return [
            Change(name, before.get(name, ""), after.get(name, ""))
            for name in sorted(before.keys() | after.keys())
            if before.get(name) != after.get(name)
        ]

    def revive(self, name: str, version: str, text: bytes, file: str) -> LoadedFlow | None:
        """The version of flow `name` whose text is `text` (kept by another process), checked
        again and kept; None if the text is not that flow at that version."""
        try:
            loaded, _ = load_text(text, file, self.lookup)
        except FlowpbxError:  # a text that no longer loads (e.g. a config value gone)
            return None
        if (loaded.flow.name, loaded.version) != (name, version):
            return None
        self.remember(loaded)
        return loaded

    @property
    def versions(self) -> int:
        """How many versions are kept (current ones included)."""
        return len(self._versions)
