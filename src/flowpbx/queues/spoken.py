"""What a queue says to callers and agents, as plain text in the flow's language (Spanish for
es-*, English otherwise); the engine wraps it in <Say> with the flow's voice. Also turns the
digits a caller types for a callback into an E.164 number. No I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

CONFIRM_KEY = "1"
"""The key that confirms the callback number read back to the caller."""
FINISH_KEY = "#"
"""The key that ends a callback number typed by the caller."""
OTHER_NUMBER_KEY = "2"
"""Pressed at the confirmation to give another number than the caller's own."""

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_COUNTRY_CODE = re.compile(r"\+[1-9][0-9]{0,2}")
_NATIONAL = re.compile(r"[0-9]{9,15}")
_WITHHELD = frozenset({"+266696687", "+7378742833", "+86282452253"})
"""What Twilio's From has been seen to carry for a withheld number: ANONYMOUS, RESTRICTED and
UNAVAILABLE spelt on a keypad. They look like E.164 but cannot be called back."""
_KEEPS_LEADING_ZERO = frozenset({"+39", "+378"})
"""Countries whose numbers keep their leading 0 after the country code (Italy: 06... is
+39 06...; San Marino likewise), where it is not a trunk prefix to drop."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Phrases:
    """Every sentence in one language; `{...}` fields are filled by the functions below."""

    first: str
    number: str
    no_agents: str
    under_a_minute: str
    one_minute: str
    minutes: str
    over_an_hour: str
    offer_callback: str
    offer_leave: str
    key_names: Mapping[str, str]
    finish_key: str
    confirm: str
    ask_number: str
    booked: str
    bad_number: str
    unclear: str
    whisper: str
    connecting: str
    callback_gone: str
    callback_unanswered: str
    callback_given_up: str


_SPANISH = _Phrases(
    first="Usted es el primero en la cola.",
    number="Usted es el número {position} en la cola.",
    no_agents=(
        "En este momento no hay agentes atendiendo; le atenderemos en cuanto haya uno disponible."
    ),
    under_a_minute="El tiempo estimado de espera es de menos de un minuto.",
    one_minute="El tiempo estimado de espera es de aproximadamente un minuto.",
    minutes="El tiempo estimado de espera es de unos {minutes} minutos.",
    over_an_hour="El tiempo estimado de espera es de más de una hora.",
    offer_callback="Si prefiere que le llamemos sin perder su turno, pulse {key}.",
    offer_leave="Para salir de la cola, pulse {key}.",
    key_names={"*": "asterisco", "#": "almohadilla"},
    finish_key="la tecla almohadilla",
    confirm=(
        "Le llamaremos al número terminado en {digits}. Para confirmarlo, pulse {confirm}. "
        "Para usar otro número, pulse {other}."
    ),
    ask_number="Marque el número en el que quiere que le llamemos, seguido de {finish}.",
    booked=(
        "Gracias. Le llamaremos al número terminado en {digits} cuando llegue su turno. "
        "Ya puede colgar."
    ),
    bad_number="Ese número no es válido.",
    unclear="No hemos recibido ninguna opción válida.",
    whisper="Devolución de llamada de la cola {queue}. Le pasamos con el cliente.",
    connecting="Le pasamos con un agente.",
    callback_gone="Esta devolución de llamada ya no está pendiente. Gracias.",
    callback_unanswered=(
        "El cliente no ha contestado. Volveremos a intentarlo más tarde. Gracias."
    ),
    callback_given_up=(
        "El cliente no ha contestado. Era el último intento: no volveremos a llamarle. Gracias."
    ),
)

_ENGLISH = _Phrases(
    first="You are first in line.",
    number="You are number {position} in line.",
    no_agents=("No agents are taking calls right now; we will answer as soon as one is available."),
    under_a_minute="The estimated wait is less than a minute.",
    one_minute="The estimated wait is about one minute.",
    minutes="The estimated wait is about {minutes} minutes.",
    over_an_hour="The estimated wait is more than an hour.",
    offer_callback="To be called back without losing your place, press {key}.",
    offer_leave="To leave the queue, press {key}.",
    key_names={"*": "star", "#": "pound"},
    finish_key="the pound key",
    confirm=(
        "We will call you back on the number ending in {digits}. To confirm, press {confirm}. "
        "To use another number, press {other}."
    ),
    ask_number="Dial the number you want us to call you back on, followed by {finish}.",
    booked=(
        "Thank you. We will call you back on the number ending in {digits} when it is your "
        "turn. You may hang up now."
    ),
    bad_number="That number is not valid.",
    unclear="We did not receive a valid option.",
    whisper="Callback from the queue {queue}. Connecting you to the customer.",
    connecting="Connecting you to an agent.",
    callback_gone="This callback is no longer pending. Thank you.",
    callback_unanswered="The customer did not answer. We will try again later. Thank you.",
    callback_given_up=(
        "The customer did not answer. That was the last attempt: we will not call again. Thank you."
    ),
)


def _phrases(language: str) -> _Phrases:
    """Spanish for any es-* tag (es-ES, es-MX...), English for every other language: the
    queue's sentences exist in these two only, and English is the widest understood."""
    primary = re.split(r"[-_]", language, maxsplit=1)[0].lower()
    return _SPANISH if primary == "es" else _ENGLISH


def _key(key: str, phrases: _Phrases) -> str:
    """A key as spoken: digits as they are, '*' and '#' by name."""
    return phrases.key_names.get(key, key)


def _last_digits(number: str) -> str:
    """The last four digits of a number, spaced so the voice reads them one by one."""
    digits = [char for char in number if char in "0123456789"]
    if not digits:
        raise ValueError(f"number has no digits to read back: {number!r}")
    return " ".join(digits[-4:])


def announcement(position: int, wait: int | None, language: str) -> str:
    """The caller's place and estimated wait, e.g. 'Usted es el número 3 en la cola. El tiempo
    estimado de espera es de unos 4 minutos.'

    `wait` is seconds from `estimate_wait`; None means no agent serves the queue, which is
    said instead of a number. Waits are spoken in whole minutes, rounded to the nearest (halves
    up): under 60 s is 'less than a minute', 60-89 s 'about one minute', 90-3569 s 'about N
    minutes', and anything that rounds to 60 minutes or more 'more than an hour'. Raises
    ValueError for a position below 1.
    """
    if position < 1:
        raise ValueError(f"position must be 1 or more, got {position}")
    phrases = _phrases(language)
    place = phrases.first if position == 1 else phrases.number.format(position=position)
    return f"{place} {_wait_sentence(wait, phrases)}"


def _wait_sentence(wait: int | None, phrases: _Phrases) -> str:
    if wait is None:
        return phrases.no_agents
    if wait < 60:
        return phrases.under_a_minute
    minutes = (wait + 30) // 60
    if minutes == 1:
        return phrases.one_minute
    if minutes < 60:
        return phrases.minutes.format(minutes=minutes)
    return phrases.over_an_hour


def offer_keys(leave_key: str | None, callback_key: str | None, language: str) -> str:
    """The keys a waiting caller may press: the callback first (when offered), then leaving
    the queue. '' when neither is offered. Leaving is said as such, not as 'leave a message':
    where the caller goes next is up to the flow."""
    phrases = _phrases(language)
    sentences = []
    if callback_key:
        sentences.append(phrases.offer_callback.format(key=_key(callback_key, phrases)))
    if leave_key:
        sentences.append(phrases.offer_leave.format(key=_key(leave_key, phrases)))
    return " ".join(sentences)


def callback_confirm(number: str, language: str) -> str:
    """Reads back the end of the number a callback would go to (the caller's own) and asks to
    confirm it with CONFIRM_KEY (one key: taken at once), or to press OTHER_NUMBER_KEY to type
    another one. When `number` cannot be called back (withheld, a softphone client), asks for
    a number instead, as `callback_ask_number` does: there is nothing to confirm."""
    phrases = _phrases(language)
    if not is_phone_number(number):
        return callback_ask_number(language)
    return phrases.confirm.format(
        digits=_last_digits(number),
        confirm=_key(CONFIRM_KEY, phrases),
        other=_key(OTHER_NUMBER_KEY, phrases),
    )


def callback_ask_number(language: str) -> str:
    """Asks for the number to call back, ending with FINISH_KEY: for a caller whose own number
    is unknown (anonymous) or not one that can be called back."""
    phrases = _phrases(language)
    return phrases.ask_number.format(finish=phrases.finish_key)


def callback_booked(number: str, language: str) -> str:
    """Thanks the caller once the callback is booked, with the end of the number it will go to,
    and tells them they may hang up: their place in the queue is kept. Raises ValueError when
    `number` has no digits (a booked callback always has an E.164 number)."""
    return _phrases(language).booked.format(digits=_last_digits(number))


def callback_bad_number(language: str) -> str:
    """Said when the typed number is not one `callback_number` accepts."""
    return _phrases(language).bad_number


def callback_unclear(language: str) -> str:
    """Said when the caller pressed no key, or one with no meaning, while asked to confirm."""
    return _phrases(language).unclear


def callback_whisper(queue: str, language: str) -> str:
    """What the agent hears before the customer is dialled, so they know the call is a
    callback from `queue` and not a new caller."""
    return _phrases(language).whisper.format(queue=queue)


def connecting(language: str) -> str:
    """What a caller hears when their turn comes, while the agent's phone rings."""
    return _phrases(language).connecting


def callback_gone(language: str) -> str:
    """What an agent hears on answering a callback that is no longer pending."""
    return _phrases(language).callback_gone


def callback_unanswered(language: str) -> str:
    """What an agent hears when the person to be called back does not answer."""
    return _phrases(language).callback_unanswered


def callback_given_up(language: str) -> str:
    """What an agent hears when the last attempt to call someone back was not answered."""
    return _phrases(language).callback_given_up


def callback_number(digits: str, country_code: str) -> str | None:
    """The E.164 number for digits a caller typed, or None when they cannot be one.

    '00' starts an international number ('0044...' is '+44...'). Otherwise 9 to 15 digits are
    a national number: one leading 0 (the trunk prefix in most countries, e.g. UK 07...) is
    dropped, except where numbers keep it (Italy, San Marino), and `country_code` goes in
    front. The result must pass `is_phone_number`. A number already starting with '+' (not
    typed: a keypad has no '+') is only checked. Numbers of fewer than 9 digits must be typed
    with 00 and their country code.

    Raises ValueError when `country_code` is not '+' and 1 to 3 digits (a settings mistake).
    """
    if not _COUNTRY_CODE.fullmatch(country_code):
        raise ValueError(f"country code must be '+' and 1 to 3 digits, got {country_code!r}")
    if digits.startswith("+"):
        candidate = digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]
    elif _NATIONAL.fullmatch(digits):
        national = digits
        if national.startswith("0") and country_code not in _KEEPS_LEADING_ZERO:
            national = national[1:]
        candidate = country_code + national
    else:
        return None
    return candidate if is_phone_number(candidate) else None


def is_phone_number(number: str) -> bool:
    """Whether `number` can be called back: E.164 (+, then 8 to 15 digits, the first not 0)
    and not one of the stand-ins Twilio's From carries for a withheld number. False for
    'anonymous', 'client:alice', SIP addresses and ''."""
    return bool(_E164.fullmatch(number)) and number not in _WITHHELD
