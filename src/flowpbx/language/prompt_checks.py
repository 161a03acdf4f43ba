"""Checks that what a menu says matches what it does: every key its prompt tells callers to
press is an option, and every option is one the prompt tells them about.

The keys a prompt names are found by `key_mentions`: a verb such as "pulse", "marque" or
"press", then (after an optional "la tecla", "el número", "the", "key"...) a key, written as a
digit, a word ("cinco", "asterisco", "almohadilla", "five", "star", "pound") or * and #; a list
such as "pulse 1 o 2" or "press 1 or 2" names each of its keys. Case and accents do not matter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

from flowpbx.errors import Problem, Severity
from flowpbx.language.flow import MenuNode
from flowpbx.language.outline import Outline, problem

_SPANISH_VERBS = frozenset(
    {
        "pulse", "pulsa", "pulsar",
        "marque", "marca", "marcar",
        "presione", "presiona", "presionar",
        "oprima", "oprime", "oprimir",
        "teclee", "teclea", "teclear",
        "elija", "elige", "elegir",
        "seleccione", "selecciona", "seleccionar",
        "digite", "digita", "digitar",
    }
)  # fmt: skip
_ENGLISH_VERBS = frozenset({"press", "dial", "enter", "select", "choose", "push"})
_VERBS = _SPANISH_VERBS | _ENGLISH_VERBS
_CHOOSING = frozenset(
    {"elija", "elige", "elegir", "seleccione", "selecciona", "seleccionar", "select", "choose"}
)
"""Verbs after which "uno", "una" or "one" is a pronoun ("elija uno", "choose one")."""

_KEY_WORDS = {
    "cero": "0", "uno": "1", "una": "1", "dos": "2", "tres": "3", "cuatro": "4",
    "cinco": "5", "seis": "6", "siete": "7", "ocho": "8", "nueve": "9",
    "asterisco": "*", "estrella": "*", "almohadilla": "#", "numeral": "#", "gato": "#",
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
    "star": "*", "asterisk": "*", "pound": "#", "hash": "#",
}  # fmt: skip
_AMBIGUOUS = frozenset({"uno", "una", "one"})
"""Number words that are also articles or pronouns ("elija una opción", "choose one")."""

_FILLERS = frozenset(
    {"la", "el", "tecla", "boton", "numero", "opcion", "the", "key", "button", "number", "option"}
)
"""Words that may come between the verb and the key: "pulse la tecla 5", "press the 5 key"."""
_MAX_FILLERS = 3

_KEY_NOUNS = frozenset({"key", "button"})
"""Words after the key that belong to the phrase quoted in messages: "press the pound key"."""

_SEPARATORS = frozenset({"o", "u", "y", "e", "or", "and", ","})
"""What joins the keys of a list: "pulse 1 o 2", "press 1, 2 or 3"."""

_PURPOSE = frozenset({"para", "for", "si", "if"})
"""What follows a key of a list whose keys each say what they are for: "pulse 1 para vida, 2
para salud", "press 1 for sales or 2 for support"."""
_PURPOSE_WORDS = 12
"""How far a purpose may run before the next key of the list."""
_SENTENCE_ENDS = frozenset({".", ";", "?", "!", ":"})
_NOT_A_KEY_BEFORE = frozenset(
    {
        "cifra", "cifras", "digito", "digitos", "numeros", "segundo", "segundos",
        "minuto", "minutos", "vez", "veces", "de", "opcion", "opciones",
        "digit", "digits", "number", "numbers", "second", "seconds", "minute", "minutes",
        "times", "of", "option", "options",
    }
)  # fmt: skip
"""Words after which a number is a count, not a key: "marque 8 cifras", "elija una de"."""

_SPOKEN = {
    "es": {"*": "asterisco", "#": "almohadilla"},
    "en": {"*": "star", "#": "pound"},
}

_TOKEN = re.compile(
    r"(?P<variable>\{[a-z][a-z0-9_]*(?::[a-z]+)?\})"
    r"|(?P<number>\d+(?:[.,:]\d+)*)"
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<symbol>[*#])"
    r"|(?P<punct>[^\w\s])"
)


class _Kind(Enum):
    VARIABLE = "variable"
    NUMBER = "number"
    WORD = "word"
    SYMBOL = "symbol"
    PUNCT = "punct"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    norm: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class KeyMention:
    """A key a text tells callers to press."""

    key: str | None
    """"0"-"9", "*" or "#"; None when a variable gives the key ("pulse {tecla}")."""
    phrase: str
    """The words as written, from the verb to the key: "pulse 5", "press 1 or 2"."""
    verb: str
    """The verb, lowercase and without accents: "pulse", "press"."""


def _normal(text: str) -> str:
    """Lowercase, without accents: "Opción" → "opcion"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = _Kind(match.lastgroup)
        tokens.append(_Token(kind, _normal(match.group()), match.start(), match.end()))
    return tokens


def _key(tokens: Sequence[_Token], at: int, *, after_choosing: bool) -> str | None:
    """The key the token at `at` names ("" for a variable), or None if it names none."""
    token = tokens[at]
    following = tokens[at + 1] if at + 1 < len(tokens) else None
    if token.kind is _Kind.VARIABLE:
        return ""
    if token.kind is _Kind.SYMBOL:
        return token.norm
    if token.kind is _Kind.NUMBER:
        if len(token.norm) != 1 or (following and following.kind is _Kind.NUMBER):
            return None  # "pulse 10", "marque 9 1 2": a number, not a key
        key = token.norm
    elif token.kind is _Kind.WORD and token.norm in _KEY_WORDS:
        key = _KEY_WORDS[token.norm]
        if token.norm in _AMBIGUOUS and after_choosing:
            return None
        if token.norm == "una" and following and following.kind is not _Kind.PUNCT:
            return None  # "pulse una tecla", "elija una o varias"
    else:
        return None
    if following and following.kind is _Kind.WORD and following.norm in _NOT_A_KEY_BEFORE:
        return None
    return key


def _skip_fillers(tokens: Sequence[_Token], at: int) -> int:
    skipped = 0
    while (
        at < len(tokens)
        and skipped < _MAX_FILLERS
        and tokens[at].kind is _Kind.WORD
        and tokens[at].norm in _FILLERS
    ):
        at += 1
        skipped += 1
    return at


def _listed(text: str, tokens: Sequence[_Token], verb: int) -> Iterator[KeyMention]:
    """The keys named after the verb at index `verb`: one, or a list joined by "o", "or"..."""
    at = verb + 1
    while True:
        at = _skip_fillers(tokens, at)
        if at >= len(tokens):
            return
        choosing = at == verb + 1 and tokens[verb].norm in _CHOOSING
        key = _key(tokens, at, after_choosing=choosing)
        if key is None:
            return
        end = tokens[at].end
        if at + 1 < len(tokens) and tokens[at + 1].norm in _KEY_NOUNS:
            end = tokens[at + 1].end  # "press the pound key"
        phrase = " ".join(text[tokens[verb].start : end].split())
        yield KeyMention(key or None, phrase, tokens[verb].norm)
        at += 1
        if at < len(tokens) and tokens[at].norm in _SEPARATORS:
            while at < len(tokens) and tokens[at].norm in _SEPARATORS:
                at += 1  # "press 1, or 2", "press 1, 2, and 3"
            continue
        if at < len(tokens) and tokens[at].norm in _PURPOSE:
            # "press 1 for sales, 2 for support or 9 for an agent": the list goes on
            following = _next_in_list(tokens, at)
            if following is None:
                return
            at = following
            continue
        return


def _next_in_list(tokens: Sequence[_Token], at: int) -> int | None:
    """After "1 for sales" (the purpose starts at `at`), the next key of the same list: one
    after a separator, itself followed by a purpose ("2 for support"), a separator or the end
    of the sentence; None when the sentence ends first."""
    for i in range(at + 1, min(len(tokens), at + _PURPOSE_WORDS)):
        if tokens[i].norm in _SENTENCE_ENDS:
            return None
        if tokens[i].norm not in _SEPARATORS:
            continue
        j = i + 1
        while j < len(tokens) and tokens[j].norm in _SEPARATORS:
            j += 1  # ", or 9 for an agent"
        if j >= len(tokens) or _key(tokens, j, after_choosing=True) is None:
            continue
        after = tokens[j + 1].norm if j + 1 < len(tokens) else "."
        if after in _PURPOSE or after in _SEPARATORS or after in _SENTENCE_ENDS:
            return j
    return None


def key_mentions(text: str) -> tuple[KeyMention, ...]:
    """Every key `text` tells callers to press, in order (a key may be named twice).

    `text` is a prompt as written: a `{variable}` where a key should be gives a mention whose
    key is None.
    """
    tokens = _tokens(text)
    return tuple(
        mention
        for index, token in enumerate(tokens)
        if token.kind is _Kind.WORD and token.norm in _VERBS
        for mention in _listed(text, tokens, index)
    )


def keys_named(text: str) -> list[str]:
    """The keys `text` tells callers to press, each once, in order: ["1", "2", "*"]."""
    keys: list[str] = []
    for mention in key_mentions(text):
        if mention.key is not None and mention.key not in keys:
            keys.append(mention.key)
    return keys


def _option(key: str) -> str:
    """A key as an option is written: 5, or "*" (quoted, as YAML needs)."""
    return key if key.isdigit() else f'"{key}"'


def _spoken(verb: str, key: str) -> str:
    """What the prompt would say to offer `key`, with the prompt's own verb: "pulse 4"."""
    words = _SPOKEN["en" if verb in _ENGLISH_VERBS else "es"]
    return f"{verb} {words.get(key, key)}"


def _menu_problems(outline: Outline, menu: MenuNode, text: str) -> Iterator[Problem]:
    mentions = key_mentions(text)
    if not mentions:
        return  # the prompt describes the options some other way
    reported: set[str] = set()
    for mention in mentions:
        key = mention.key
        if key is None or key in menu.options or key in reported:
            continue
        reported.add(key)
        yield problem(
            outline,
            ("nodes", menu.id, "prompt"),
            Severity.ERROR,
            "menu-prompt-key",
            f"node '{menu.id}': the prompt says \"{mention.phrase}\" but there is no option "
            f"{_option(key)}; add option {_option(key)} or change the prompt",
            key=True,
        )
    if any(mention.key is None for mention in mentions):
        return  # a variable names a key: the prompt may offer any option
    named = {mention.key for mention in mentions}
    for key, target in menu.options.items():
        if key in named:
            continue
        yield problem(
            outline,
            ("nodes", menu.id, "options", key),
            Severity.WARNING,
            "menu-option-unmentioned",
            f"node '{menu.id}': option {_option(key)} goes to '{target}' but the prompt never "
            f'says "{_spoken(mentions[0].verb, key)}"; callers will not know it is there; '
            "offer it in the prompt, or remove the option",
            key=True,
        )


def check_menu_prompts(outline: Outline) -> Iterator[Problem]:
    """A menu's spoken prompt offers exactly its options: no key without an option (error), no
    option the prompt never mentions (warning). Audio prompts and prompts that name no key at
    all are not checked."""
    for node in outline.nodes.values():
        if isinstance(node, MenuNode) and node.prompt.text is not None:
            yield from _menu_problems(outline, node, node.prompt.text.source)
