"""Path parameters that match a well-formed Twilio sid only (`{sid:call_sid}`): anything else is
no path at all, a JSON 404, so `GET /api/calls/incoming` still finds the webhook (405) and never
reaches a handler. Also their OpenAPI description."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.convertors import Convertor, register_url_convertor


@dataclass(frozen=True, slots=True)
class SidParameter:
    """A Twilio sid in a path: its two-letter prefix and 32 hex digits."""

    convertor: str
    prefix: str
    description: str

    @property
    def regex(self) -> str:
        return f"{self.prefix}[0-9a-fA-F]{{32}}"


PARAMETERS = {
    p.convertor: p
    for p in (
        SidParameter("call_sid", "CA", "Twilio's CallSid."),
        SidParameter("recording_sid", "RE", "Twilio's RecordingSid."),
    )
}


class _SidConvertor(Convertor[str]):
    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def register() -> None:
    """Make the convertors known to Starlette (before any route names them); idempotent."""
    for parameter in PARAMETERS.values():
        convertor = type(
            f"{parameter.prefix}SidConvertor", (_SidConvertor,), {"regex": parameter.regex}
        )
        register_url_convertor(parameter.convertor, convertor())


def openapi_parameters(path: str) -> list[dict[str, Any]]:
    """The OpenAPI parameters of a path's `{name:convertor}` parts."""
    found = []
    for name, convertor in re.findall(r"\{(\w+):(\w+)\}", path):
        parameter = PARAMETERS[convertor]
        found.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": parameter.description,
                "schema": {
                    "type": "string",
                    "pattern": f"^{parameter.regex}$",
                    "examples": [parameter.prefix + "0123456789abcdef" * 2],
                },
            }
        )
    return found
