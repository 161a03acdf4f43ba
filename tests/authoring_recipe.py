"""The author guide's recipe for option 5 (docs/authoring.md), applied as a person would: the
guide's own YAML blocks put into copies of the shipped flow and its scenarios."""

from __future__ import annotations

import re

from conftest import FLOWS, ROOT

GUIDE = ROOT / "docs" / "authoring.md"


def guide() -> str:
    return GUIDE.read_text("utf-8")


def block(info: str) -> str:
    """The text of the guide's fenced code block whose info string is `info`."""
    found = re.search(rf"^```{re.escape(info)}\n(.*?)^```$", guide(), re.MULTILINE | re.DOTALL)
    assert found, f"no ```{info} block in {GUIDE}"
    return found.group(1)


def with_option_5(text: str) -> str:
    """seguros.yaml's text with the guide's three edits: the number, the menu, the nodes."""
    number = '  PRESUPUESTOS_NUMBER: "+34912345675"\n'
    assert number in text
    text = text.replace(number, number + block("yaml recipe-option-5-config"), 1)
    start = text.index("  menu_principal:\n")
    end = text.index("    timeout: 5\n", start)
    text = text[:start] + block("yaml recipe-option-5-menu") + text[end:]
    anchor = "  # --- 9 agente"
    assert anchor in text
    return text.replace(anchor, block("yaml recipe-option-5-nodes") + "\n" + anchor, 1)


def seguros_with_option_5() -> str:
    return with_option_5((FLOWS / "seguros.yaml").read_text("utf-8"))


def scenarios_with_option_5() -> str:
    """flows/tests/seguros.yaml with the guide's scenarios for option 5 added at the end."""
    shipped = (FLOWS / "tests" / "seguros.yaml").read_text("utf-8")
    return shipped.rstrip("\n") + "\n\n" + block("yaml recipe-option-5-scenarios")


VIAJE = "Ha elegido seguros de viaje. Le pasamos con el departamento de seguros de viaje."
