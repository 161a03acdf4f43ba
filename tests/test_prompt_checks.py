"""A menu's prompt offers exactly its options: keys the prompt names are found in Spanish and
English phrasings, a named key without an option is an error, an unmentioned option a warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowpbx.errors import Problem
from flowpbx.language.loader import check_file, check_text
from flowpbx.language.prompt_checks import KeyMention, key_mentions, keys_named

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "flows"
CODES = ("menu-prompt-key", "menu-option-unmentioned")
CLEAN = [
    ROOT / "flows" / "seguros.yaml",
    *sorted((FIXTURES / "valid").glob("*.yaml")),
    *sorted((FIXTURES / "engine").glob("*.yaml")),
]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        # Spanish verbs, digits
        ("Para seguros de vida, pulse 1. Para salud, pulse 2.", ["1", "2"]),
        ("Pulsa 3.", ["3"]),
        ("Marque 9 para hablar con un agente.", ["9"]),
        ("Si es cliente, marca 4", ["4"]),
        ("Presione 5; presiona 6", ["5", "6"]),
        ("Oprima 7, oprime 8", ["7", "8"]),
        ("Teclee 0. Teclea 1.", ["0", "1"]),
        ("Elija 2, seleccione 3 o digite 4.", ["2", "3", "4"]),
        ("Puede pulsar 0 en cualquier momento.", ["0"]),
        # spelled-out numbers, case and accents
        ("PULSE CINCO para repetir.", ["5"]),
        ("Pulse uno, dos, tres, cuatro, cinco, seis, siete, ocho, nueve o cero.",
         ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]),
        ("Presióne la tecla Número 3.", ["3"]),
        ("Seleccione la opción 2.", ["2"]),
        ("Pulse el botón 6.", ["6"]),
        # star and hash, as words and as symbols
        ("Para volver al menú principal, pulse asterisco.", ["*"]),
        ("Pulse la tecla estrella.", ["*"]),
        ("Pulse almohadilla.", ["#"]),
        ("Marque numeral.", ["#"]),
        ("Oprima la tecla gato.", ["#"]),
        ("Pulse * o #.", ["*", "#"]),
        # lists name every key
        ("Pulse 1 o 2.", ["1", "2"]),
        ("Pulse 1, 2 o 3.", ["1", "2", "3"]),
        ("Pulse 1 u 8.", ["1", "8"]),
        ("Pulse 4 o la tecla asterisco.", ["4", "*"]),
        # English
        ("For sales, press 1. For support, press 2.", ["1", "2"]),
        ("To reach an operator, dial 0.", ["0"]),
        ("Enter 3, select 4, choose 5, push 6.", ["3", "4", "5", "6"]),
        ("Press one or two.", ["1", "2"]),
        ("Press zero, three, four, six, seven, eight or nine.",
         ["0", "3", "4", "6", "7", "8", "9"]),
        ("To repeat, press star.", ["*"]),
        ("Press the asterisk key.", ["*"]),
        ("Press the pound key.", ["#"]),
        ("Press hash.", ["#"]),
        ("Press 1 or 2.", ["1", "2"]),
        ("Press 1, 2 and 3.", ["1", "2", "3"]),
        ("Press the 5 key.", ["5"]),
        # not keys
        ("Marque su número de póliza de ocho cifras.", []),
        ("Marque 8 cifras.", []),
        ("Teclee sus 4 dígitos.", []),
        ("Teclee 4 dígitos.", []),
        ("Enter 6 digits.", []),
        ("Marque ocho números.", []),
        ("Espere 5 segundos.", []),
        ("Press 5 times.", []),
        ("Elija una opción.", []),
        ("Por favor, elija una de las siguientes opciones.", []),
        ("Seleccione uno de los departamentos.", []),
        ("Pulse una tecla para continuar.", []),
        ("Pulse cualquier tecla.", []),
        ("Choose one of the following.", []),
        ("Choose one.", []),
        ("Pulse 10.", []),
        ("Marque el 9 1 2 3 4.", []),
        ("Pulse 1,5.", []),
        ("Marque su número y pulse almohadilla.", ["#"]),
        ("Para seguros de vida, el 1. Para salud, el 2.", []),
        ("Bienvenido a Seguros.", []),
        ("Pulse 1 o espere.", ["1"]),
        ("Pulse 1. 2 para salud.", ["1"]),
        ("Tiene 3 opciones: pulse 1.", ["1"]),
    ],
)  # fmt: skip
def test_keys_named(text: str, keys: list[str]) -> None:
    """The finder reads verb (+ 'la tecla', 'the'...) + key, and lists, nothing else."""
    assert keys_named(text) == keys


def test_key_mentions_quote_the_phrase_as_written() -> None:
    """Each mention quotes the words from the verb to the key, as written, on one line."""
    assert key_mentions("Para volver,\n  PULSE la tecla   asterisco. Press the pound key.") == (
        KeyMention("*", "PULSE la tecla asterisco", "pulse"),
        KeyMention("#", "Press the pound key", "press"),
    )
    assert [m.phrase for m in key_mentions("Pulse 1 o 2.")] == ["Pulse 1", "Pulse 1 o 2"]


def test_key_mentions_variable_key() -> None:
    """A variable where the key should be is a mention with no key."""
    assert key_mentions("Pulse {tecla} para {departamento}.") == (
        KeyMention(None, "Pulse {tecla}", "pulse"),
    )
    assert keys_named("Hola {caller}, pulse 1.") == ["1"]


MENU = """\
name: prueba
entry: menu
nodes:
  menu:
    type: menu
    prompt: {prompt}
    options:
{options}
    exhausted: adios
  uno:
    type: hangup
  dos:
    type: hangup
  adios:
    type: hangup
"""


def _menu(prompt: str, options: dict[str, str]) -> list[str]:
    """The prompt problems of a one-menu flow, as `line:column: severity: message`."""
    lines = "\n".join(f'      "{key}": {target}' for key, target in options.items())
    report = check_text(MENU.format(prompt=prompt, options=lines), "prueba.yaml")
    return [_shown(p) for p in report.problems if p.code in CODES]


def _shown(problem: Problem) -> str:
    return f"{problem.line}:{problem.column}: {problem.severity}: {problem.message}"


def test_menu_key_without_option_is_an_error() -> None:
    """A key the prompt names but no option takes is an error at the prompt, named once."""
    assert _menu("Pulse 1 para ventas, pulse 2 para soporte. Repito, pulse 2.", {"1": "uno"}) == [
        "6:5: error: node 'menu': the prompt says \"pulse 2\" but there is no option 2; "
        "add option 2 or change the prompt",
    ]


def test_menu_star_without_option_is_an_error() -> None:
    """Star and hash are quoted in the message, as an option key must be written."""
    assert _menu("Press 1, or press star to repeat.", {"1": "uno"}) == [
        '6:5: error: node \'menu\': the prompt says "press star" but there is no option "*"; '
        'add option "*" or change the prompt',
    ]


def test_menu_unmentioned_option_is_a_warning() -> None:
    """An option the prompt never offers is a warning at the option, in the prompt's words."""
    assert _menu("For sales, press 1.", {"1": "uno", "#": "dos"}) == [
        "9:7: warning: node 'menu': option \"#\" goes to 'dos' but the prompt never says "
        '"press pound"; callers will not know it is there; offer it in the prompt, or remove '
        "the option",
    ]


@pytest.mark.parametrize(
    "prompt",
    [
        "Bienvenido. Diga a qué departamento quiere llamar.",  # names no key at all
        "Pulse {tecla} para ventas.",  # a variable gives the key
        "Elija una opción.",
    ],
)
def test_menu_prompt_without_keys_has_no_warnings(prompt: str) -> None:
    """A prompt that names no key (or names one through a variable) is not second-guessed."""
    assert _menu(prompt, {"1": "uno", "2": "dos"}) == []


def test_menu_audio_prompt_is_not_checked() -> None:
    """An audio prompt cannot be read: no problems."""
    text = MENU.format(
        prompt="\n      play: https://example.com/menu.mp3", options='      "1": uno'
    )
    report = check_text(text, "prueba.yaml")
    assert report.flow is not None
    assert [p for p in report.problems if p.code in CODES] == []


def test_menu_prompt_matching_options_is_clean() -> None:
    """Every key named has an option, every option is named: nothing to report."""
    assert _menu("Para ventas, pulse 1. Para soporte, pulse 2.", {"1": "uno", "2": "dos"}) == []


def test_fixture_key_missing_reports_error_at_prompt() -> None:
    """The seguros-like menu whose prompt still says 'pulse 5' fails, at its prompt."""
    report = check_file(FIXTURES / "invalid" / "menu_prompt_key_missing.yaml")
    assert [_shown(p) for p in report.problems] == [
        "13:5: error: node 'menu_principal': the prompt says \"pulse 5\" but there is no "
        "option 5; add option 5 or change the prompt",
    ]
    assert report.flow is None


def test_fixture_option_unmentioned_warns_at_each_option() -> None:
    """Options 4 and * are never offered: one warning each, and the flow still loads."""
    report = check_file(FIXTURES / "invalid" / "menu_option_unmentioned.yaml")
    assert [_shown(p) for p in report.problems] == [
        "15:7: warning: node 'menu_principal': option 4 goes to 'automovil' but the prompt "
        'never says "pulse 4"; callers will not know it is there; offer it in the prompt, '
        "or remove the option",
        "17:7: warning: node 'menu_principal': option \"*\" goes to 'bienvenida' but the "
        'prompt never says "pulse asterisco"; callers will not know it is there; offer it in '
        "the prompt, or remove the option",
    ]
    assert report.flow is not None


@pytest.mark.parametrize("path", CLEAN, ids=[p.stem for p in CLEAN])
def test_shipped_and_valid_flows_have_no_prompt_problems(path: Path) -> None:
    """The shipped flow and the valid and engine test flows offer exactly their options."""
    problems = [_shown(p) for p in check_file(path).problems if p.code in CODES]
    assert problems == []


@pytest.mark.parametrize(
    ("prompt", "keys"),
    [
        ("Press 1 for life, 2 for health, 3 for home, or 9 for an agent.", ["1", "2", "3", "9"]),
        ("Pulse 1 para vida, 2 para salud, 3 para hogar o 9 para un agente.", ["1", "2", "3", "9"]),
        ("press 1 for sales or 2 for support", ["1", "2"]),
        ("Press 1, or 2, or 3", ["1", "2", "3"]),
        ("Press 1, 2, and 3", ["1", "2", "3"]),
        ("Pulse 1 para sí y 2 para no.", ["1", "2"]),
        ("pulse 1 para pagar 5 euros", ["1"]),
        ("Pulse 1 para pagar. Tiene 2 recibos.", ["1"]),
        ("Pulse 1 para vida, y le atenderemos en 2 minutos.", ["1"]),
    ],
)
def test_key_mentions_lists_each_saying_what_it_is_for(prompt: str, keys: list[str]) -> None:
    """The most common IVR phrasing, one verb then "1 for this, 2 for that", names every key
    of the list, and no number that is not a key."""
    assert [m.key for m in key_mentions(prompt)] == keys
