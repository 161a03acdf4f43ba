"""The flow catalog: every flow checked at start-up, one default flow, config values."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowpbx.errors import FlowError, Mark
from flowpbx.language.catalog import CatalogError, FlowCatalog, load_catalog
from flowpbx.language.flow import DEFAULT_HOLD_MUSIC, QueueSpec, QueueStrategy

SEGUROS = Path(__file__).resolve().parents[1] / "flows" / "seguros.yaml"


def _flows(tmp_path: Path, *names: str) -> Path:
    text = SEGUROS.read_text("utf-8")
    for name in names:
        (tmp_path / f"{name}.yaml").write_text(text.replace("name: seguros", f"name: {name}"))
    return tmp_path


def _load(folder: Path, default: str = "", numbers: dict[str, str] | None = None) -> FlowCatalog:
    return load_catalog(
        folder, numbers=numbers or {}, default=default, phone_number="", lookup=lambda _: None
    )


def test_catalog_single_flow_is_the_default(tmp_path: Path) -> None:
    """With one flow, it answers every number."""
    catalog = load_catalog(
        _flows(tmp_path, "uno"), numbers={}, default="", phone_number="", lookup=lambda _: None
    )
    assert catalog.for_number("+34999999999").flow.name == "uno"


def test_catalog_several_flows_need_a_default(tmp_path: Path) -> None:
    """With several flows and no FLOWPBX_DEFAULT_FLOW, the start fails and says so."""
    with pytest.raises(CatalogError, match="FLOWPBX_DEFAULT_FLOW is not set"):
        _load(_flows(tmp_path, "uno", "dos"))


def test_catalog_routes_numbers_to_flows(tmp_path: Path) -> None:
    """FLOWPBX_NUMBERS picks the flow by the number dialled; others get the default."""
    catalog = load_catalog(
        _flows(tmp_path, "uno", "dos"),
        numbers={"+34911111111": "dos"},
        default="uno",
        phone_number="",
        lookup=lambda _: None,
    )
    assert catalog.for_number("+34911111111").flow.name == "dos"
    assert catalog.for_number("+34922222222").flow.name == "uno"


def test_catalog_reports_every_invalid_flow(tmp_path: Path) -> None:
    """Two broken flows: the start fails with the problems of both."""
    folder = _flows(tmp_path, "uno")
    (folder / "roto1.yaml").write_text("name: roto1\nentry: x\nnodes: {}\n", "utf-8")
    (folder / "roto2.yaml").write_text("name: [\n", "utf-8")
    with pytest.raises(FlowError) as caught:
        _load(folder, default="uno")
    files = {Path(p.file).name for p in caught.value.problems}
    assert files == {"roto1.yaml", "roto2.yaml"}


def test_catalog_environment_overrides_config(tmp_path: Path) -> None:
    """An environment value replaces the flow's config default; the version hashes the file."""
    catalog = load_catalog(
        _flows(tmp_path, "uno"),
        numbers={},
        default="",
        phone_number="",
        lookup=lambda name: "+34900000000" if name == "VIDA_NUMBER" else None,
    )
    loaded = catalog.default_flow
    assert loaded.config["VIDA_NUMBER"] == "+34900000000"
    assert loaded.config["SALUD_NUMBER"] == "+34912345672"
    assert len(loaded.version) == 12


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        pytest.param("VIDA_NUMBER", "912345671", "node 'llamar_vida' use '912345671'", id="phone"),
        pytest.param(
            "HOLD_MUSIC_URL", "musica.mp3", "queue 'general-queue' use 'musica.mp3'", id="url"
        ),
    ],
)
def test_catalog_checks_config_values_from_environment(
    tmp_path: Path, name: str, value: str, fragment: str
) -> None:
    """A bad value in the environment stops the start, as it would in the flow file."""
    with pytest.raises(CatalogError, match=fragment):
        load_catalog(
            _flows(tmp_path, "uno"),
            numbers={},
            default="",
            phone_number="",
            lookup=lambda key: value if key == name else None,
        )


QUEUE_LINE = SEGUROS.read_text("utf-8").splitlines().index("  general-queue:") + 1

VENTAS = """\
name: ventas
entry: cola
config:
  HOLD_MUSIC_URL: https://example.com/espera.mp3
queues:
  ventas: {{}}
  general-queue:
{settings}
nodes:
  cola:
    type: enqueue
    queue: ventas
    full: otra
  otra:
    type: enqueue
    queue: general-queue
    full: adios
  adios:
    type: hangup
"""
SEGUROS_QUEUE = """\
    max_size: 100
    max_wait: 600
    strategy: round-robin
    service_level: 60
    hold_music: ${HOLD_MUSIC_URL}
    announce_every: 60
    callback: true
    ring_timeout: 20
    wrap_up: 30"""


def test_catalog_queues_of_every_flow(tmp_path: Path) -> None:
    """catalog.queues has each queue of every flow once, as its flow file declares it."""
    folder = _flows(tmp_path, "uno")
    (folder / "ventas.yaml").write_text(VENTAS.format(settings=SEGUROS_QUEUE), "utf-8")
    catalog = _load(folder, default="uno")
    assert sorted(catalog.queues) == ["general-queue", "ventas"]
    assert catalog.queues["general-queue"] == QueueSpec(
        name="general-queue",
        mark=Mark(QUEUE_LINE, 3),
        description="Cola general de agentes, para quien pulsa 9 o no elige ninguna opción.",
        max_size=100,
        max_wait=600,
        strategy=QueueStrategy.ROUND_ROBIN,
        service_level=60,
        hold_music="${HOLD_MUSIC_URL}",
        announce_every=60,
        callback=True,
        ring_timeout=20,
        wrap_up=30,
    )
    assert catalog.queues["ventas"] == QueueSpec(name="ventas", mark=Mark(6, 3))
    assert catalog.queues["ventas"].hold_music == DEFAULT_HOLD_MUSIC


def test_catalog_refuses_one_queue_declared_two_ways(tmp_path: Path) -> None:
    """A queue two flows declare with different settings stops the start, naming both places
    (file:line) and each difference."""
    folder = _flows(tmp_path, "uno")
    settings = SEGUROS_QUEUE.replace("callback: true", "callback: false")
    (folder / "ventas.yaml").write_text(VENTAS.format(settings=settings), "utf-8")
    with pytest.raises(CatalogError) as caught:
        _load(folder, default="uno")
    assert str(caught.value) == (
        "cannot serve these flows:\n"
        f"  {folder}/ventas.yaml:7: queue 'general-queue' is declared with other settings in "
        f"{folder}/uno.yaml:{QUEUE_LINE} (callback true there, false here); a queue used by "
        "several flows must have the same settings in each"
    )
