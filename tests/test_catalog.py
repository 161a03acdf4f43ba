"""The flow catalog: every flow checked at start-up, one default flow, config values."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowpbx.errors import FlowError
from flowpbx.language.catalog import CatalogError, load_catalog

SEGUROS = Path(__file__).resolve().parents[1] / "flows" / "seguros.yaml"


def _flows(tmp_path: Path, *names: str) -> Path:
    text = SEGUROS.read_text("utf-8")
    for name in names:
        (tmp_path / f"{name}.yaml").write_text(text.replace("name: seguros", f"name: {name}"))
    return tmp_path


def _load(folder: Path, default: str = "", numbers: dict[str, str] | None = None) -> object:
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
        pytest.param("HOLD_MUSIC_URL", "musica.mp3", "node 'agente' use 'musica.mp3'", id="url"),
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
