"""The flow JSON Schema: valid, shipped unchanged, documented, strict, and met by shipped flows."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jschon import JSON, JSONSchema, create_catalog
from jsonschema import Draft202012Validator

from flowpbx.language.flow import EnqueueNode, QueueSpec, QueueStrategy
from flowpbx.language.loader import check_file, check_text
from flowpbx.language.schema import flow_schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "schema" / "flow.schema.json"
PACKAGED_SCHEMA_FILE = ROOT / "src" / "flowpbx" / "data" / "flow.schema.json"
SHIPPED_FLOWS = sorted(p for p in (ROOT / "flows").iterdir() if p.suffix in (".yaml", ".yml"))
SCHEMA_HEADER_PREFIX = "# yaml-language-server: $schema="
SCHEMA_HEADER = f"{SCHEMA_HEADER_PREFIX}../schema/flow.schema.json"
NODE_DISPATCHER = "#/$defs/node"
SEGUROS_TEXT = (ROOT / "flows" / "seguros.yaml").read_text("utf-8")


# jschon resolves URIs through rfc3986, which warns about its own deprecated API; that warning
# is about jschon's dependency, not about flowpbx, so it must not fail these tests.
JSCHON_WARNINGS = pytest.mark.filterwarnings(
    "ignore:Please use rfc3986.validators.Validator:DeprecationWarning"
)

# Keywords whose value is one subschema, or a list or a name → subschema map of them.
_ONE_SUBSCHEMA = ("items", "additionalProperties", "propertyNames", "then", "else", "not")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "patternProperties")


def _load_schema_file() -> dict[str, Any]:
    """The schema as written in the repository, parsed without any flowpbx code."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text("utf-8"))
    return schema


def _subschemas(schema: dict[str, Any], pointer: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (JSON pointer, subschema) in `schema`, except inside `if` conditions.

    An `if` schema is a test ("is this node's type 'say'?"), not a declaration of what may be
    written: editors do not show it on hover, and making it strict would stop it from matching.
    """
    yield pointer, schema
    for keyword in _ONE_SUBSCHEMA:
        value = schema.get(keyword)
        if isinstance(value, dict):
            yield from _subschemas(value, f"{pointer}/{keyword}")
    for keyword in _SUBSCHEMA_LISTS:
        for i, value in enumerate(schema.get(keyword, [])):
            yield from _subschemas(value, f"{pointer}/{keyword}/{i}")
    for keyword in _SUBSCHEMA_MAPS:
        for name, value in schema.get(keyword, {}).items():
            yield from _subschemas(value, f"{pointer}/{keyword}/{name}")


def _properties() -> list[tuple[str, dict[str, Any]]]:
    """Every (pointer, property schema) declared in a `properties` map anywhere in the schema."""
    return [
        (f"{pointer}/properties/{name}", prop)
        for pointer, subschema in _subschemas(_load_schema_file())
        for name, prop in subschema.get("properties", {}).items()
    ]


PROPERTY_POINTERS = [pointer for pointer, _ in _properties()]


def _node_kinds() -> list[str]:
    kinds: list[str] = _load_schema_file()["$defs"]["node"]["properties"]["type"]["enum"]
    return kinds


def _described(prop: dict[str, Any], defs: dict[str, Any]) -> bool:
    """Whether an editor has a description to show: the property's own, or its $ref target's."""
    if str(prop.get("description", "")).strip():
        return True
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref.removeprefix("#/$defs/"), {})
        return bool(str(target.get("description", "")).strip())
    return False


def _json_compatible(value: object) -> object:
    """`value` as JSON would hold it: mapping keys as text, YAML 1.1 dates back to their text.

    PyYAML's safe_load reads YAML 1.1, not the YAML 1.2 core schema flowpbx reads: a menu
    option `1: vida` gets the integer key 1 (JSON object keys are always strings, so a JSON
    Schema validator would see a non-object), and `2026-12-25` becomes a datetime.date. Turning
    these back is not a fix-up of the flow: flowpbx itself keeps keys and dates as written.
    """
    if isinstance(value, dict):
        return {str(key): _json_compatible(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_compatible(item) for item in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _shipped_data(path: Path) -> Any:
    return _json_compatible(yaml.safe_load(path.read_text("utf-8")))


@pytest.fixture(scope="module")
def independent_schema() -> JSONSchema:
    """The repository's schema compiled by jschon, a validator flowpbx itself never uses."""
    create_catalog("2020-12")
    return JSONSchema(_load_schema_file())


def test_schema_is_valid_draft_2020_12() -> None:
    """The schema file is itself a valid JSON Schema 2020-12 document."""
    schema = _load_schema_file()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@JSCHON_WARNINGS
def test_schema_is_valid_for_independent_metaschema(independent_schema: JSONSchema) -> None:
    """jschon also finds the schema valid against the 2020-12 metaschema."""
    assert independent_schema.validate().valid


def test_schema_packaged_copy_is_identical() -> None:
    """The copy shipped inside the package is byte-identical to schema/flow.schema.json."""
    assert PACKAGED_SCHEMA_FILE.read_bytes() == SCHEMA_FILE.read_bytes()


def test_schema_flow_schema_equals_file() -> None:
    """flow_schema() returns exactly the parsed schema file."""
    assert flow_schema() == _load_schema_file()


def test_schema_walk_sees_every_node_kind() -> None:
    """The subschema walk reaches every per-kind node schema, so the rules below cover them."""
    pointers = {pointer for pointer, _ in _subschemas(_load_schema_file())}
    for kind in _node_kinds():
        assert f"#/$defs/{kind}_node" in pointers
        assert f"#/$defs/{kind}_node/properties/type" in pointers


@pytest.mark.parametrize("pointer", PROPERTY_POINTERS, ids=PROPERTY_POINTERS)
def test_schema_property_has_description(pointer: str) -> None:
    """Each property has a non-empty description, its own or that of the $def it refers to."""
    schema = _load_schema_file()
    prop = dict(_properties())[pointer]
    assert _described(prop, schema["$defs"]), f"{pointer} has no description for editors to show"


@pytest.mark.parametrize("kind", _node_kinds(), ids=_node_kinds())
def test_schema_node_kind_has_description(kind: str) -> None:
    """Each node kind has a $def named <kind>_node with a non-empty description."""
    defs = _load_schema_file()["$defs"]
    assert f"{kind}_node" in defs, f"node kind {kind!r} has no $defs/{kind}_node"
    assert str(defs[f"{kind}_node"].get("description", "")).strip()


def test_schema_node_kind_defs_match_type_enum() -> None:
    """The *_node $defs are exactly the kinds listed in the node type enum."""
    defs = _load_schema_file()["$defs"]
    assert {name.removesuffix("_node") for name in defs if name.endswith("_node")} == set(
        _node_kinds()
    )


def test_schema_objects_with_properties_are_strict() -> None:
    """Every schema declaring properties forbids other keys, except the node dispatcher."""
    loose = {
        pointer
        for pointer, subschema in _subschemas(_load_schema_file())
        if "properties" in subschema and subschema.get("additionalProperties") is not False
    }
    assert loose == {NODE_DISPATCHER}


def test_schema_node_dispatcher_delegates_every_kind() -> None:
    """$defs/node leaves extra keys to the per-kind schemas, routing each type by if/then."""
    node = _load_schema_file()["$defs"]["node"]
    # In 2020-12, additionalProperties only sees sibling 'properties' ('type' here): setting it
    # on the dispatcher would reject every key but 'type'. The strict per-kind schemas apply it.
    assert "additionalProperties" not in node
    assert "unevaluatedProperties" not in node
    routes = {
        branch["if"]["properties"]["type"]["const"]: branch["then"]["$ref"]
        for branch in node["allOf"]
    }
    assert all(set(branch) == {"if", "then"} for branch in node["allOf"])
    assert all(branch["if"]["required"] == ["type"] for branch in node["allOf"])
    assert routes == {kind: f"#/$defs/{kind}_node" for kind in _node_kinds()}


def test_schema_shipped_flows_exist() -> None:
    """The repository ships at least one flow, so the per-flow tests below test something."""
    assert SHIPPED_FLOWS
    assert "seguros.yaml" in {p.name for p in SHIPPED_FLOWS}


@pytest.mark.parametrize("path", SHIPPED_FLOWS, ids=[p.name for p in SHIPPED_FLOWS])
def test_schema_shipped_flow_declares_schema(path: Path) -> None:
    """A shipped flow's first line points editors at the schema file, by a path that resolves."""
    first_line = path.read_text("utf-8").splitlines()[0]
    assert first_line == SCHEMA_HEADER
    relative = first_line.removeprefix(SCHEMA_HEADER_PREFIX)
    target = path.parent / relative
    assert target.is_file()
    assert target.resolve() == SCHEMA_FILE.resolve()


@JSCHON_WARNINGS
@pytest.mark.parametrize("path", SHIPPED_FLOWS, ids=[p.name for p in SHIPPED_FLOWS])
def test_schema_shipped_flow_passes_independent_validator(
    path: Path, independent_schema: JSONSchema
) -> None:
    """A shipped flow, read by PyYAML, is valid for jschon as well as for flowpbx."""
    result = independent_schema.evaluate(JSON(_shipped_data(path)))
    assert result.valid, json.dumps(result.output("basic"), indent=1)[:4000]


def _with_unknown_node_key(data: dict[str, Any]) -> None:
    first_node = next(iter(data["nodes"].values()))
    first_node["colour"] = "blue"


def _with_unknown_top_level_key(data: dict[str, Any]) -> None:
    data["nodez"] = {}


def _with_number_as_text(data: dict[str, Any]) -> None:
    data["name"] = 42


def _with_text_as_number(data: dict[str, Any]) -> None:
    menu = next(n for n in data["nodes"].values() if n["type"] == "menu")
    menu["retries"] = "3"


def _with_unknown_node_type(data: dict[str, Any]) -> None:
    first_node = next(iter(data["nodes"].values()))
    first_node["type"] = "sing"


def _without_nodes(data: dict[str, Any]) -> None:
    del data["nodes"]


def _with_unknown_queue_setting(data: dict[str, Any]) -> None:
    data["queues"]["general-queue"]["max_espera"] = 300


def _with_unknown_strategy(data: dict[str, Any]) -> None:
    data["queues"]["general-queue"]["strategy"] = "random"


def _with_queue_setting_on_node(data: dict[str, Any]) -> None:
    data["nodes"]["agente"]["max_wait"] = 600


BREAKAGES = {
    "unknown-node-key": _with_unknown_node_key,
    "unknown-top-level-key": _with_unknown_top_level_key,
    "number-as-name": _with_number_as_text,
    "text-as-retries": _with_text_as_number,
    "unknown-node-type": _with_unknown_node_type,
    "missing-nodes": _without_nodes,
    "unknown-queue-setting": _with_unknown_queue_setting,
    "unknown-strategy": _with_unknown_strategy,
    "queue-setting-on-node": _with_queue_setting_on_node,
}


@JSCHON_WARNINGS
@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_schema_independent_validator_rejects_broken_flow(
    breakage: Callable[[dict[str, Any]], None], independent_schema: JSONSchema
) -> None:
    """jschon rejects a broken copy of seguros.yaml, so the passing check above can fail."""
    data = _shipped_data(ROOT / "flows" / "seguros.yaml")
    assert isinstance(data, dict)
    broken = copy.deepcopy(data)
    breakage(broken)
    assert independent_schema.evaluate(JSON(data)).valid
    assert not independent_schema.evaluate(JSON(broken)).valid


@JSCHON_WARNINGS
def test_schema_independent_validator_takes_integer_option_keys(
    independent_schema: JSONSchema,
) -> None:
    """Unquoted digit option keys, read as integers by YAML readers other than flowpbx's own
    (PyYAML here, the editor's yaml-language-server), are accepted like the text flowpbx reads."""
    raw = yaml.safe_load((ROOT / "flows" / "seguros.yaml").read_text("utf-8"))
    assert 1 in raw["nodes"]["menu_principal"]["options"]
    assert independent_schema.evaluate(JSON(raw)).valid
    raw["nodes"]["menu_principal"]["options"][10] = "vida"
    assert not independent_schema.evaluate(JSON(raw)).valid


@pytest.mark.parametrize("path", SHIPPED_FLOWS, ids=[p.name for p in SHIPPED_FLOWS])
def test_schema_shipped_flow_checks_clean(path: Path) -> None:
    """A shipped flow loads with check_file with no errors and no warnings."""
    report = check_file(path)
    assert [str(p) for p in report.problems] == []
    assert report.flow is not None


def test_schema_queue_settings_match_the_model() -> None:
    """A queue's settings in the schema are exactly QueueSpec's fields (but its name and where
    it is written), and the strategies exactly QueueStrategy's values."""
    queue = _load_schema_file()["$defs"]["queue"]
    fields = {field.name for field in dataclasses.fields(QueueSpec)}
    assert set(queue["properties"]) == fields - {"name", "mark"}
    assert queue["properties"]["strategy"]["enum"] == [s.value for s in QueueStrategy]


def test_schema_enqueue_keys_match_the_model() -> None:
    """An enqueue node's keys in the schema are exactly EnqueueNode's fields (but its id and
    where it is written), and the settings that moved to queues are listed as such."""
    node = _load_schema_file()["$defs"]["enqueue_node"]
    fields = {field.name for field in dataclasses.fields(EnqueueNode)}
    assert set(node["properties"]) - {"type"} == fields - {"id", "mark"}
    assert not set(node["x-moved-to-queue"]) & set(node["properties"])
    assert set(node["x-moved-to-queue"]) <= set(_load_schema_file()["$defs"]["queue"]["properties"])


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        pytest.param("general-queue", True, id="dash"),
        pytest.param("0800_ventas", True, id="digit-first"),
        pytest.param("q" * 64, True, id="64-characters"),
        pytest.param("q" * 65, False, id="65-characters"),
        pytest.param("General", False, id="upper-case"),
        pytest.param("-cola", False, id="dash-first"),
        pytest.param("cola general", False, id="space"),
    ],
)
def test_schema_queue_names(name: str, valid: bool) -> None:
    """Queue names are lowercase, start with a letter or digit, and fit Twilio's 64."""
    text = SEGUROS_TEXT.replace("  general-queue:\n", f"  {name}:\n").replace(
        "    queue: general-queue\n", f"    queue: {name}\n"
    )
    assert text.count(f"  {name}:\n") == 1
    assert text.count(f"    queue: {name}\n") == 1
    report = check_text(text, "seguros.yaml")
    assert (report.flow is not None) == valid, [str(p) for p in report.problems]
