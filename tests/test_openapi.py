"""The OpenAPI document against the running API: schemathesis generates requests from it
(valid and invalid), and every answer must be documented, match its schema, and never be a
5xx. Twilio's REST API is the local fake, so calls the document allows are really placed."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from flowpbx.app import build_app
from flowpbx.db import apikeys
from flowpbx.db.database import Database
from flowpbx.web.api import openapi
from flowpbx.web.api.routes import RestApi
from served import served
from test_api import settings_for
from twilio_rest import twilio_rest


@dataclass(frozen=True)
class Running:
    url: str
    key: str
    document: dict[str, Any]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    database_url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'api.sqlite3'}"
    with twilio_rest() as fake:
        settings = settings_for(database_url, fake, calls_per_second=1000)
        with served(build_app(settings)) as url:
            db = Database(database_url)
            try:
                _, key = apikeys.create(
                    db, "schemathesis", identity=None, admin=True, now=dt.datetime.now(dt.UTC)
                )
            finally:
                db.dispose()
            headers = {"Authorization": f"Bearer {key}"}
            document = requests.get(f"{url}/api/openapi.json", headers=headers, timeout=10)
            document.raise_for_status()
            yield Running(url=url, key=key, document=document.json())


def _document() -> dict[str, Any]:
    """The document the app serves, made the same way (it needs no database or Twilio)."""
    api = RestApi(
        db=cast(Any, None),
        catalog=cast(Any, None),
        base_url=cast(Any, None),
        tokens=None,
        missing_token=(),
        dialer=None,
        missing_dialer=(),
    )
    return openapi.document(api.operations())


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_the_api_keeps_to_its_document(case: schemathesis.Case[Any], running: Running) -> None:
    # Every check but "schema-valid data is accepted": rules beyond the schema (the allowed
    # destinations, the flows loaded, the caller ids) refuse some schema-valid calls with 422,
    # as documented. A case whose headers were made invalid (the key left out) goes without
    # the key: adding it would make the case valid, and its acceptance a false failure.
    components = case.meta.components if case.meta else {}
    header = components.get(ParameterLocation.HEADER)
    keyless = header is not None and header.mode is GenerationMode.NEGATIVE
    case.call_and_validate(
        base_url=running.url,
        headers={} if keyless else {"Authorization": f"Bearer {running.key}"},
        excluded_checks=[positive_data_acceptance],
    )


def test_the_document_is_openapi_3_1_with_every_operation(running: Running) -> None:
    doc = running.document
    assert doc == _document()  # the served document is the one tested above
    assert doc["openapi"] == "3.1.0"
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert operations == {
        ("POST", "/api/token"),
        ("POST", "/api/calls"),
        ("GET", "/api/keys"),
        ("GET", "/api/calls/history"),
        ("GET", "/api/calls/{sid}"),
        ("GET", "/api/recordings/{sid}"),
        ("GET", "/api/analytics"),
        ("GET", "/api/queues"),
        ("GET", "/api/queues/{queueId}"),
        ("GET", "/api/queues/{queueId}/stats"),
        ("GET", "/api/agents"),
        ("POST", "/api/agents"),
        ("GET", "/api/agents/{agentId}"),
        ("PATCH", "/api/agents/{agentId}"),
        ("DELETE", "/api/agents/{agentId}"),
        ("PUT", "/api/agents/{agentId}/status"),
    }
    for path, item in doc["paths"].items():
        # Every {name} in a path is a documented, required path parameter of each operation.
        named = set(re.findall(r"\{(\w+)\}", path))
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == named, (path, declared)
            assert all(p["required"] for p in operation.get("parameters", []) if p["in"] == "path")
    for item in doc["paths"].values():
        for operation in item.values():
            assert operation["security"] == [{"apiKey": []}]
            for status in ("401", "403"):
                error = operation["responses"][status]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorBody"}
    token = doc["components"]["schemas"]["TokenRequest"]
    assert token["required"] == ["identity"]
    assert token["additionalProperties"] is False
    assert token["properties"]["identity"]["pattern"] == "^[A-Za-z0-9_]{1,121}$"
    call = doc["components"]["schemas"]["CallRequest"]
    assert set(call["properties"]) == {"to", "from", "flow", "identity"}
