"""The OpenAPI 3.1 document, made from the operations and their msgspec shapes (JSON Schema
2020-12, which OpenAPI 3.1 uses as it is)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from flowpbx import __version__
from flowpbx.web.api import paths
from flowpbx.web.api.framework import ERRORS, Operation
from flowpbx.web.api.queue_shapes import PATH_PARAMETERS
from flowpbx.web.api.shapes import ErrorBody

REF = "#/components/schemas/{name}"
TAGS = [
    {"name": "queues", "description": "Call queues: who waits, estimated waits, statistics."},
    {"name": "agents", "description": "The people who answer queues' calls, and their status."},
]


def _ref(shape: type) -> dict[str, str]:
    return {"$ref": REF.format(name=shape.__name__)}


def _parameters(query: type, components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = components[query.__name__]
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.get("description", ""),
            "schema": {k: v for k, v in prop.items() if k != "description"},
        }
        for name, prop in schema["properties"].items()
    ]


def _path_parameters(path: str) -> list[dict[str, Any]]:
    """The OpenAPI parameters of a path's plain `{name}` parts (queue and agent ids)."""
    found = []
    for name in re.findall(r"\{(\w+)\}", path):
        schema = msgspec.json.schema(PATH_PARAMETERS[name])
        description = schema.pop("description", "")
        found.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": description,
                "schema": schema,
            }
        )
    return found


def _operation(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.summary,
        "tags": list(op.tags),
        "security": [{"apiKey": []}],
        "responses": {
            str(op.status): {
                "description": "Success.",
                "content": {"application/json": {"schema": _ref(op.response)}},
            },
            **{
                str(status): {
                    "description": ERRORS[status],
                    "content": {"application/json": {"schema": _ref(ErrorBody)}},
                }
                for status in op.all_errors
            },
        },
    }
    if op.description:
        doc["description"] = op.description
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    parameters = paths.openapi_parameters(op.path) + _path_parameters(op.path)
    if op.query is not None:
        parameters += _parameters(op.query, components)
    if parameters:
        doc["parameters"] = parameters
    return doc


def document(operations: Iterable[Operation]) -> dict[str, Any]:
    """The OpenAPI document for these operations."""
    operations = list(operations)
    shapes: set[type] = {ErrorBody}
    for op in operations:
        shapes.update(s for s in (op.body, op.response, op.query) if s is not None)
    _, components = msgspec.json.schema_components(
        sorted(shapes, key=lambda s: s.__name__), ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", op.path)
        paths.setdefault(path, {})[op.method.lower()] = _operation(op, components)
    used = {op.query.__name__ for op in operations if op.query is not None}
    used -= {s.__name__ for op in operations for s in (op.body, op.response) if s is not None}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flowpbx REST API",
            "version": __version__,
            "description": (
                "Softphone tokens, outbound calls, call history, recordings, analytics, "
                "queues and agents. Every request needs `Authorization: Bearer <key>` "
                '(`flowpbx apikey create`). Errors are `{"error": code, "detail": text}`.'
            ),
        },
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": {k: v for k, v in components.items() if k not in used},
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A flowpbx API key, `fpbx_...`",
                }
            },
        },
        "security": [{"apiKey": []}],
    }
