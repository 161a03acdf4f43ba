"""`flowpbx validate`: exit codes, one quiet line when all is well, file:line:col otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowpbx.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEGUROS = ROOT / "flows" / "seguros.yaml"
FIXTURES = Path(__file__).resolve().parent / "flows"


def _validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    return result.exit_code, result.output


def test_validate_shipped_flows_prints_one_line() -> None:
    """The shipped flows folder is valid: exit 0 and a single summary line."""
    code, output = _validate(str(ROOT / "flows"))
    assert code == 0
    assert output.splitlines() == ["1 flow valid, 0 warnings"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "      4: automovil\n",
            "      4: automobil\n",
            "seguros.yaml:129:10: error: node 'menu_principal': option '4' goes to 'automobil', "
            "which does not exist (did you mean 'automovil'?)",
            id="typo-in-reference",
        ),
        pytest.param(
            "      9: agente_aviso\n",
            "      9: agente_aviso\n      3: vida\n",
            "seguros.yaml:131:7: error: node 'menu_principal': option '3' is written twice "
            "(first on line 128); keep only one",
            id="duplicate-digit",
        ),
        pytest.param(
            "    text: Bienvenido a Seguros. Le informamos",
            "    text: Bienvenido a Seguros: su aseguradora. Le informamos",
            "seguros.yaml:116:31: error: a ':' followed by a space inside a value; "
            "put the whole text in quotes",
            id="yaml-syntax-error",
        ),
        pytest.param(
            "    no_input: No hemos recibido ninguna opción.\n",
            "    sin_respuesta: No hemos recibido ninguna opción.\n",
            "seguros.yaml:133:5: error: node 'menu_principal': unknown key 'sin_respuesta'; "
            "expected one of: type, description, prompt, options",
            id="unknown-key",
        ),
    ],
)
def test_validate_broken_copy_of_menu(tmp_path: Path, old: str, new: str, expected: str) -> None:
    """A broken copy of the Spanish menu fails with a located message a person can act on."""
    text = SEGUROS.read_text("utf-8")
    assert old in text
    path = tmp_path / "seguros.yaml"
    path.write_text(text.replace(old, new, 1), "utf-8")
    code, output = _validate(str(path))
    assert code == 1
    assert any(line.startswith(f"{tmp_path}/{expected}") for line in output.splitlines()), output
    assert output.splitlines()[-1].startswith("1 flow checked: 1 invalid")


def test_validate_warnings_pass_unless_strict() -> None:
    """Warnings are shown but exit 0; with --strict they fail."""
    path = str(FIXTURES / "invalid" / "unreachable.yaml")
    code, output = _validate(path)
    assert code == 0
    assert "warning: node 'olvidado' is never reached" in output
    assert output.splitlines()[-1] == "1 flow valid, 1 warning"
    strict_code, _ = _validate("--strict", path)
    assert strict_code == 1


def test_validate_json_output() -> None:
    """--format json lists every problem with its position and code."""
    code, output = _validate("--format", "json", str(FIXTURES / "invalid" / "wrong_type.yaml"))
    assert code == 1
    payload = json.loads(output)
    assert payload["valid"] is False
    assert payload["errors"] == 1
    assert payload["files"] == [
        {"file": str(FIXTURES / "invalid" / "wrong_type.yaml"), "flow": None, "valid": False}
    ]
    (problem,) = payload["problems"]
    assert {k: problem[k] for k in ("line", "column", "severity", "code")} == {
        "line": 10,
        "column": 14,
        "severity": "error",
        "code": "schema",
    }


def test_validate_folder_finds_nested_flows(tmp_path: Path) -> None:
    """A folder is searched recursively for .yaml and .yml files."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(SEGUROS, tmp_path / "a" / "uno.yaml")
    text = SEGUROS.read_text("utf-8").replace("name: seguros\n", "name: seguros-dos\n")
    (tmp_path / "a" / "b" / "dos.yml").write_text(text, "utf-8")
    (tmp_path / "notas.txt").write_text("not a flow", "utf-8")
    code, output = _validate(str(tmp_path))
    assert (code, output.strip()) == (0, "2 flows valid, 0 warnings")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(["/no/such/flows"], "no such file or folder: /no/such/flows", id="missing"),
        pytest.param([], "Missing argument", id="no-arguments"),
        pytest.param(["--format", "xml", "flows"], "Invalid value for '--format'", id="format"),
    ],
)
def test_validate_usage_errors_exit_2(args: list[str], fragment: str) -> None:
    """Usage mistakes exit 2 with a message, never a traceback."""
    code, output = _validate(*args)
    assert code == 2
    assert fragment in output


def test_validate_empty_folder_is_usage_error(tmp_path: Path) -> None:
    """A folder without flow files is a usage error, so CI does not pass by checking nothing."""
    code, output = _validate(str(tmp_path))
    assert code == 2
    assert "no flow files" in output


def test_validate_two_files_with_one_flow_name_fails(tmp_path: Path) -> None:
    """A copy of a flow that keeps its name fails validation (the service would not start),
    naming both files and the line of the duplicate `name:`."""
    shutil.copy(SEGUROS, tmp_path / "seguros.yaml")
    shutil.copy(SEGUROS, tmp_path / "copia.yaml")
    code, output = _validate(str(tmp_path))
    assert code == 1
    assert output.splitlines() == [
        f"{tmp_path}/seguros.yaml:9:1: error: flow name 'seguros' is already used by "
        f"{tmp_path}/copia.yaml; each flow needs its own name",
        "2 flows checked: 1 invalid, 1 error, 0 warnings",
    ]


def test_validate_one_queue_declared_two_ways_fails(tmp_path: Path) -> None:
    """Two flows may share a queue only with the same settings: the later file gets an error
    where it declares the queue, naming the earlier declaration and what differs."""
    text = SEGUROS.read_text("utf-8")
    assert text.count("    max_wait: 600\n") == 1
    (tmp_path / "a.yaml").write_text(text, "utf-8")
    other = text.replace("name: seguros\n", "name: seguros-dos\n")
    other = other.replace("    max_wait: 600\n", "    max_wait: 300\n")
    (tmp_path / "b.yaml").write_text(other.replace("    wrap_up: 30\n", "    wrap_up: 0\n"))
    line = text.splitlines().index("  general-queue:") + 1
    code, output = _validate(str(tmp_path))
    assert code == 1
    assert output.splitlines() == [
        f"{tmp_path}/b.yaml:{line}:3: error: queue 'general-queue' is declared with other "
        f"settings in {tmp_path}/a.yaml:{line} (max_wait 600 there, 300 here; wrap_up 30 there, "
        "0 here); a queue used by several flows must have the same settings in each",
        "2 flows checked: 1 invalid, 1 error, 0 warnings",
    ]


def test_validate_one_queue_declared_alike_passes(tmp_path: Path) -> None:
    """Two flows declaring a queue with the same settings (descriptions may differ) are fine."""
    text = SEGUROS.read_text("utf-8")
    assert text.count("    description: Cola general") == 1
    (tmp_path / "a.yaml").write_text(text, "utf-8")
    other = text.replace("name: seguros\n", "name: seguros-dos\n")
    other = other.replace("    description: Cola general", "    description: Otra descripción")
    (tmp_path / "b.yaml").write_text(other, "utf-8")
    code, output = _validate(str(tmp_path))
    assert (code, output.strip()) == (0, "2 flows valid, 0 warnings")
