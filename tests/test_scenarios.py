"""`flowpbx test`: the shipped scenarios of the Spanish menu pass and cover it all; failures,
mistakes in scenario files and coverage under --min-coverage are reported with file:line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from jsonschema import Draft202012Validator

from conftest import FLOWS, ROOT
from flowpbx.authoring.coverage import coverage
from flowpbx.authoring.scenario_run import plain
from flowpbx.cli import main
from flowpbx.engine.call_events import DialFinished, NodeEntered, OptionChosen
from flowpbx.engine.events import DialResult
from flowpbx.language.loader import load_flow

SCHEMA = ROOT / "schema" / "scenario.schema.json"
PACKAGED = ROOT / "src" / "flowpbx" / "data" / "scenario.schema.json"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["test", *args])


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A flows folder with seguros.yaml and an empty tests/ folder beside it."""
    shutil.copy(FLOWS / "seguros.yaml", tmp_path / "seguros.yaml")
    (tmp_path / "tests").mkdir()
    return tmp_path


def scenario_file(flows: Path, steps: str, *, at: str = "2026-12-02 10:00") -> Path:
    """A scenario file for seguros with one scenario of `steps` (YAML lines, indented 6)."""
    path = flows / "tests" / "prueba.yaml"
    path.write_text(
        f"flow: seguros\nat: {at}\nscenarios:\n  - name: Prueba\n    steps:\n{steps}",
        encoding="utf-8",
    )
    return path


def test_shipped_scenarios_pass_and_cover_every_node_and_outcome() -> None:
    """`flowpbx test flows/tests --min-coverage 100` passes every scenario of the Spanish menu
    and covers all its nodes and outcomes."""
    result = run(str(FLOWS / "tests"), "--min-coverage", "100")
    assert result.exit_code == 0, result.output
    assert "✗" not in result.output
    assert "  seguros: 28/28 nodes (100%), 51/51 outcomes (100%)" in result.output.splitlines()
    assert result.output.splitlines()[-1].endswith(" passed, 0 failed")


def test_without_path_runs_the_flows_folders_tests(flows: Path) -> None:
    """With no PATH, the tests/ folder of FLOWPBX_FLOWS_DIR is run."""
    scenario_file(flows, "      - hear: Bienvenido a Seguros\n")
    result = CliRunner(env={"FLOWPBX_FLOWS_DIR": str(flows)}).invoke(main, ["test"])
    assert result.exit_code == 0, result.output
    assert "  ✓ Prueba" in result.output


def test_wrong_hear_prints_file_line_the_path_and_what_was_heard(flows: Path) -> None:
    """A `hear` that was not said fails at its file:line:col, quoting what the caller heard,
    with the path the call took, and the scenario stops there."""
    path = scenario_file(
        flows,
        "      - press: 1\n      - hear: departamento de vida\n      - dial: answered\n",
    )
    result = run(str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "  ✗ Prueba" in lines
    assert (
        f"    {path}:7:9: scenario 'Prueba': expected to hear \"departamento de vida\" but the "
        'caller heard: "Ha elegido seguros de vida. Le pasamos con el departamento de seguros '
        'de vida."'
    ) in lines
    assert "    path: horario → bienvenida → menu_principal → vida → llamar_vida" in lines
    assert lines[-1] == "1 scenarios: 0 passed, 1 failed"


@pytest.mark.parametrize(
    ("heard", "passes"),
    [
        ("Seguros de vida", True),
        ("seguros de VIDA, pulse 1", True),
        ("guros de vida", False),
        ("pulse 12", False),
        ("de seguros de vid", False),
    ],
)
def test_hear_matches_whole_words(flows: Path, heard: str, passes: bool) -> None:
    """`hear` ignores case and punctuation but matches whole words: "pulse 1" is not heard in
    "pulse 12", nor "guros" in "seguros"."""
    path = scenario_file(flows, f"      - hear: {heard}\n")
    result = run(str(path))
    assert (result.exit_code == 0) is passes, result.output


@pytest.mark.parametrize(
    ("steps", "line", "message"),
    [
        pytest.param(
            "      - press: 1\n      - reach: buzon_vida\n",
            7,
            "expected to reach 'buzon_vida' but since the previous action it went: vida → "
            "llamar_vida",
            id="reach",
        ),
        pytest.param(
            "      - press: 2\n      - dialled: +34912345671\n",
            7,
            "expected +34912345671 to be dialled but since the previous action: +34912345672",
            id="dialled",
        ),
        pytest.param(
            "      - press: 1\n      - ends: hangup\n",
            7,
            "expected the call to end (hangup) but it goes on: it waits for a dial to end at "
            "'llamar_vida'",
            id="ends-goes-on",
        ),
        pytest.param(
            "      - press: 1\n      - dial: answered\n      - ends: hangup\n",
            8,
            "expected the call to end with 'hangup' but it ended with 'connected' (connected "
            "to the number dialled) at 'llamar_vida'",
            id="ends-otherwise",
        ),
        pytest.param(
            "      - press: 9\n      - records: true\n",
            7,
            "expected a recording to start, but none did (the call waits in a queue at 'agente')",
            id="records",
        ),
    ],
)
def test_each_check_says_what_happened_instead(
    flows: Path, steps: str, line: int, message: str
) -> None:
    """Each kind of check that does not hold says, in plain words, what happened instead."""
    path = scenario_file(flows, steps)
    result = run(str(path))
    assert result.exit_code == 1
    assert f"{path}:{line}:9: scenario 'Prueba': {message}" in result.output


def test_checks_ignore_capitals_accents_and_punctuation() -> None:
    """`hear` compares text without capitals, accents or punctuation."""
    assert plain("Para seguros de AUTOMÓVIL, pulse 4.") == "para seguros de automovil pulse 4"


def test_press_while_waiting_for_a_dial_is_an_error_at_its_line(flows: Path) -> None:
    """Pressing keys while the call waits for a dial fails at the press's line, saying what the
    call waits for and what to write instead."""
    path = scenario_file(flows, "      - press: 1\n      - press: 2\n")
    result = run(str(path))
    assert result.exit_code == 1
    assert (
        f"{path}:7:9: scenario 'Prueba': 'press: 2' cannot happen here: the call waits for a "
        "dial to end at 'llamar_vida'; write dial: answered, busy, no-answer or failed"
    ) in result.output


def test_reach_of_an_unknown_node_suggests_the_closest(flows: Path) -> None:
    """`reach` of a node the flow does not have is an error at its line, with did-you-mean,
    and no scenario of the file runs."""
    path = scenario_file(flows, "      - press: 1\n      - reach: buzon_vidas\n")
    result = run(str(path))
    assert result.exit_code == 1
    assert (
        f"{path}:7:9: error: flow seguros has no node 'buzon_vidas'; did you mean 'buzon_vida'?"
    ) in result.output
    assert "Prueba" not in result.output


def test_schema_errors_in_a_scenario_file_are_located(flows: Path) -> None:
    """Unknown keys, bad values, two things in one step and a missing ':' are reported at their
    line and column, in plain words."""
    path = scenario_file(
        flows,
        "      - heard: Bienvenido\n      - dial: busi\n      - press: 1\n        hear: x\n"
        "      - press 1\n",
    )
    result = run(str(path))
    assert result.exit_code == 1
    assert (
        f"{path}:6:9: error: scenario 1, step 1: unknown key 'heard'; did you mean 'hear'? "
        "expected one of: press, dial, queue, record, hear, reach, dialled, joins, records, ends"
    ) in result.output
    assert (
        f"{path}:7:15: error: scenario 1, step 2, 'dial': unknown value 'busi'; did you mean "
        "'busy'? expected one of: answered, busy, no-answer, failed"
    ) in result.output
    assert (
        f"{path}:8:9: error: scenario 1, step 3: has 2 keys (press, hear); a step does one "
        "thing: put each on its own line starting with '- '"
    ) in result.output
    assert (
        f"{path}:10:9: error: scenario 1, step 4: a ':' is missing after 'press': write - press: 1"
    ) in result.output


def test_coverage_under_the_minimum_exits_1_and_lists_what_was_missed(flows: Path) -> None:
    """Scenarios that pass but cover less than --min-coverage exit 1, listing each node and
    outcome never taken with its place in the flow file."""
    path = scenario_file(flows, "      - press: 1\n      - dial: no-answer\n")
    result = run(str(path), "--min-coverage", "80")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "  ✓ Prueba" in lines
    assert "  seguros: 6/28 nodes (21%), 5/51 outcomes (9%)" in lines
    seguros = flows / "seguros.yaml"
    assert f"    {seguros}:156:5: never reached: node 'salud'" in lines
    assert f"    {seguros}:127:7: never taken: menu_principal option '2' → salud" in lines
    assert lines[-1] == "1 scenarios: 1 passed, 0 failed; coverage under 80%: seguros"
    assert run(str(path)).exit_code == 0


def test_unquoted_numbers_keep_their_plus_and_leading_zeros(flows: Path) -> None:
    """`press: 00123456` keeps its zeros (a valid 8-digit policy) and `dialled: +34...` its
    plus, as written."""
    path = scenario_file(
        flows,
        "      - press: 4\n      - press: 1\n      - press: 00123456\n      - reach: parte\n"
        "      - dialled: +34912345674\n",
    )
    result = run(str(path))
    assert result.exit_code == 0, result.output


def test_a_clock_that_does_not_exist_in_the_flows_time_zone_fails(flows: Path) -> None:
    """A time skipped when Madrid's clocks go forward fails the scenario at its `at`."""
    path = scenario_file(flows, "      - press: 1\n", at="2026-03-29 02:30")
    result = run(str(path))
    assert result.exit_code == 1
    assert (
        f"{path}:2:1: scenario 'Prueba': 2026-03-29 02:30 does not exist in Europe/Madrid"
    ) in result.output


def test_json_output_carries_results_and_coverage(flows: Path) -> None:
    """--format json gives each scenario's result and each flow's coverage as data."""
    path = scenario_file(flows, "      - press: 1\n      - hear: nada\n")
    result = run(str(path), "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert document["passed"] is False
    failure = document["files"][0]["scenarios"][0]["failure"]
    assert (failure["line"], failure["column"]) == (7, 9)
    assert document["coverage"][0]["nodes"]["total"] == 28


def test_no_scenario_files_is_a_usage_error(tmp_path: Path) -> None:
    """A PATH that does not exist, or holds no scenario files, exits 2."""
    assert run(str(tmp_path / "nada")).exit_code == 2
    assert run(str(tmp_path)).exit_code == 2


def test_coverage_tells_apart_outcomes_to_the_same_node() -> None:
    """Option 9 and the menu's exhausted way both lead to agente_aviso; the event that chose
    tells them apart, as a dial's result tells busy from no_answer."""
    flow = load_flow(FLOWS / "seguros.yaml")
    chosen = coverage(
        flow,
        [
            [
                NodeEntered(node="menu_principal", kind="menu"),
                OptionChosen(node="menu_principal", key="9", target="agente_aviso"),
                NodeEntered(node="agente_aviso", kind="say"),
            ],
            [
                NodeEntered(node="llamar_vida", kind="dial"),
                DialFinished(node="llamar_vida", result=DialResult.BUSY, duration=0),
                NodeEntered(node="buzon_vida", kind="record"),
            ],
        ],
    )
    assert chosen.outcomes == {
        ("menu_principal", ("options", "9")),
        ("llamar_vida", ("busy",)),
    }
    exhausted = coverage(
        flow,
        [
            [
                NodeEntered(node="menu_principal", kind="menu"),
                NodeEntered(node="agente_aviso", kind="say"),
            ]
        ],
    )
    assert exhausted.outcomes == {("menu_principal", ("exhausted",))}


def test_scenario_schema_is_valid_and_packaged_identically() -> None:
    """The scenario schema is valid JSON Schema 2020-12, and its packaged copy is
    byte-identical."""
    Draft202012Validator.check_schema(json.loads(SCHEMA.read_text("utf-8")))
    assert SCHEMA.read_bytes() == PACKAGED.read_bytes()


def test_shipped_scenario_file_points_editors_at_the_schema() -> None:
    """The shipped scenario file's first line names the schema, by a path that resolves."""
    first = (FLOWS / "tests" / "seguros.yaml").read_text("utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    assert (FLOWS / "tests" / first.removeprefix(prefix)).resolve() == SCHEMA.resolve()


def test_guide_documents_every_step() -> None:
    """docs/scenarios.md shows every step the schema allows, as a line of a scenario."""
    guide = (ROOT / "docs" / "scenarios.md").read_text("utf-8")
    steps = json.loads(SCHEMA.read_text("utf-8"))["$defs"]["step"]["properties"]
    assert [key for key in steps if f"`- {key}: " not in guide] == []


def test_coverage_tells_switch_cases_with_the_same_target_apart(tmp_path: Path) -> None:
    """Two cases of a switch lead to the same node: the one the call matched is covered,
    the other is listed as never taken."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "sw.yaml").write_text(
        "name: sw\nentry: route\nnodes:\n  route:\n    type: switch\n    variable: caller\n"
        '    cases:\n      - starts_with: "+346"\n        next: movil\n'
        '      - starts_with: "+347"\n        next: movil\n    default: fijo\n'
        "  movil:\n    type: hangup\n    text: Móvil.\n"
        "  fijo:\n    type: hangup\n    text: Fijo.\n",
        encoding="utf-8",
    )
    (tmp_path / "tests" / "sw.yaml").write_text(
        "flow: sw\nat: 2026-11-24 10:00\nscenarios:\n  - name: Un móvil +347\n"
        '    caller: "+34700000000"\n    steps:\n      - hear: Móvil\n',
        encoding="utf-8",
    )
    result = run(str(tmp_path / "tests"))
    assert result.exit_code == 0, result.output
    assert "  sw: 2/3 nodes (66%), 1/3 outcomes (33%)" in result.output.splitlines()
    assert "never taken: route case 1 → movil" in result.output
    assert "never taken: route case 2 → movil" not in result.output
