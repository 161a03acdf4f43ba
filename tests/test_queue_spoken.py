"""What queues say: position and wait in whole minutes, key offers, callback prompts and the
agent's whisper, in Spanish for es-* and English otherwise; typed callback digits to E.164."""

from __future__ import annotations

import pytest

from flowpbx.queues.spoken import (
    CONFIRM_KEY,
    FINISH_KEY,
    OTHER_NUMBER_KEY,
    announcement,
    callback_ask_number,
    callback_bad_number,
    callback_booked,
    callback_confirm,
    callback_number,
    callback_unclear,
    callback_whisper,
    is_phone_number,
    offer_keys,
)

ES_WAIT = "El tiempo estimado de espera es de"
EN_WAIT = "The estimated wait is"


@pytest.mark.parametrize(
    ("wait", "spanish", "english"),
    [
        pytest.param(0, "menos de un minuto", "less than a minute", id="0s"),
        pytest.param(59, "menos de un minuto", "less than a minute", id="59s"),
        # (60 + 30) // 60 = 1.
        pytest.param(60, "aproximadamente un minuto", "about one minute", id="60s"),
        # (89 + 30) // 60 = 1.
        pytest.param(89, "aproximadamente un minuto", "about one minute", id="89s"),
        # (90 + 30) // 60 = 2: halves round up.
        pytest.param(90, "unos 2 minutos", "about 2 minutes", id="90s"),
        # (150 + 30) // 60 = 3 (Python's round(2.5) would say 2).
        pytest.param(150, "unos 3 minutos", "about 3 minutes", id="150s"),
        # (240 + 30) // 60 = 4.
        pytest.param(240, "unos 4 minutos", "about 4 minutes", id="240s"),
        # (3569 + 30) // 60 = 59.
        pytest.param(3569, "unos 59 minutos", "about 59 minutes", id="3569s"),
        # (3599 + 30) // 60 = 60: rounds to an hour.
        pytest.param(3599, "más de una hora", "more than an hour", id="3599s"),
        pytest.param(3600, "más de una hora", "more than an hour", id="3600s"),
    ],
)
def test_announcement_speaks_the_wait_in_whole_minutes(
    wait: int, spanish: str, english: str
) -> None:
    """Under a minute, about one minute, about N minutes, more than an hour."""
    assert announcement(1, wait, "es-ES") == f"Usted es el primero en la cola. {ES_WAIT} {spanish}."
    assert announcement(1, wait, "en-US") == f"You are first in line. {EN_WAIT} {english}."


def test_announcement_exact_sentences() -> None:
    """Whole announcements, as the caller hears them."""
    assert announcement(3, 240, "es-ES") == (
        "Usted es el número 3 en la cola. El tiempo estimado de espera es de unos 4 minutos."
    )
    assert announcement(2, 30, "es-ES") == (
        "Usted es el número 2 en la cola. El tiempo estimado de espera es de menos de un minuto."
    )
    assert announcement(1, None, "es-ES") == (
        "Usted es el primero en la cola. En este momento no hay agentes atendiendo; "
        "le atenderemos en cuanto haya uno disponible."
    )
    assert announcement(2, None, "en-GB") == (
        "You are number 2 in line. "
        "No agents are taking calls right now; we will answer as soon as one is available."
    )
    # The worked example in docs/queues.md: 918 s, (918 + 30) // 60 = 15 minutes.
    assert announcement(11, 918, "es-ES") == (
        "Usted es el número 11 en la cola. El tiempo estimado de espera es de unos 15 minutos."
    )
    assert announcement(3, 240, "en-US") == (
        "You are number 3 in line. The estimated wait is about 4 minutes."
    )


@pytest.mark.parametrize(
    ("language", "first"),
    [
        pytest.param("es-ES", "Usted es el primero en la cola.", id="es-ES"),
        pytest.param("es-MX", "Usted es el primero en la cola.", id="es-MX"),
        pytest.param("es", "Usted es el primero en la cola.", id="es"),
        pytest.param("en-US", "You are first in line.", id="en-US"),
        pytest.param("fr-FR", "You are first in line.", id="fr-FR-falls-back-to-english"),
        pytest.param("eu-ES", "You are first in line.", id="basque-is-not-spanish"),
    ],
)
def test_language_choice(language: str, first: str) -> None:
    """Spanish for every es-* tag, English for every other language."""
    assert announcement(1, 0, language).startswith(first)


def test_announcement_rejects_position_zero() -> None:
    """A caller not waiting has no place to announce."""
    with pytest.raises(ValueError, match="position must be 1 or more, got 0"):
        announcement(0, 60, "es-ES")


@pytest.mark.parametrize(
    ("leave", "callback", "language", "expected"),
    [
        pytest.param(
            "0",
            "1",
            "es-ES",
            "Si prefiere que le llamemos sin perder su turno, pulse 1. "
            "Para salir de la cola, pulse 0.",
            id="es-both",
        ),
        pytest.param(
            "0",
            "1",
            "en-US",
            "To be called back without losing your place, press 1. To leave the queue, press 0.",
            id="en-both",
        ),
        pytest.param("*", None, "es-ES", "Para salir de la cola, pulse asterisco.", id="es-star"),
        pytest.param(
            None,
            "#",
            "es-ES",
            "Si prefiere que le llamemos sin perder su turno, pulse almohadilla.",
            id="es-pound",
        ),
        pytest.param("*", None, "en-US", "To leave the queue, press star.", id="en-star"),
        pytest.param(
            None,
            "#",
            "en-US",
            "To be called back without losing your place, press pound.",
            id="en-pound",
        ),
        pytest.param(None, None, "es-ES", "", id="none"),
    ],
)
def test_offer_keys(leave: str | None, callback: str | None, language: str, expected: str) -> None:
    """The callback is offered first, then leaving; '*' and '#' are said by name."""
    assert offer_keys(leave, callback, language) == expected


def test_callback_confirm_reads_the_last_four_digits() -> None:
    """The end of the number, digit by digit, then one key to confirm it (1) and one to give
    another (2): the number itself is asked for only after 2."""
    assert callback_confirm("+34612345678", "es-ES") == (
        "Le llamaremos al número terminado en 5 6 7 8. Para confirmarlo, pulse 1. "
        "Para usar otro número, pulse 2."
    )
    assert callback_confirm("+34612340009", "en-US") == (
        "We will call you back on the number ending in 0 0 0 9. To confirm, press 1. "
        "To use another number, press 2."
    )


def test_callback_confirm_names_the_keys_the_engine_takes() -> None:
    """The keys said are the module's CONFIRM_KEY and OTHER_NUMBER_KEY, which the engine
    matches; the confirmation no longer mentions the finish key."""
    assert (CONFIRM_KEY, OTHER_NUMBER_KEY, FINISH_KEY) == ("1", "2", "#")
    spanish = callback_confirm("+34612345678", "es-ES")
    assert f"pulse {CONFIRM_KEY}." in spanish
    assert f"pulse {OTHER_NUMBER_KEY}." in spanish
    assert "almohadilla" not in spanish
    assert "pound" not in callback_confirm("+34612345678", "en-US")


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param("anonymous", id="anonymous"),
        pytest.param("", id="empty"),
        pytest.param("client:alice", id="softphone"),
        pytest.param("+266696687", id="twilio-withheld-anonymous"),
        pytest.param("+7378742833", id="twilio-withheld-restricted"),
    ],
)
def test_callback_confirm_asks_for_a_number_when_there_is_none_to_confirm(caller: str) -> None:
    """A caller without a number that can be called back is asked for one, not read garbage."""
    assert callback_confirm(caller, "es-ES") == callback_ask_number("es-ES")


def test_callback_booked_needs_digits() -> None:
    """A booked callback without a number is a programming error."""
    with pytest.raises(ValueError, match="no digits"):
        callback_booked("anonymous", "es-ES")


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        pytest.param("+34612345678", True, id="spanish"),
        pytest.param("+4930123456", True, id="german-short"),
        pytest.param("+123456789012345", True, id="15-digits"),
        pytest.param("+1234567890123456", False, id="16-digits"),
        pytest.param("+1234567", False, id="7-digits"),
        pytest.param("+0612345678", False, id="leading-zero"),
        pytest.param("34612345678", False, id="no-plus"),
        pytest.param("+34612345678\n", False, id="trailing-newline"),
        pytest.param("+266696687", False, id="anonymous-sentinel"),
        pytest.param("+86282452253", False, id="unavailable-sentinel"),
        pytest.param("client:alice", False, id="client"),
    ],
)
def test_is_phone_number(number: str, expected: bool) -> None:
    """E.164 and not a withheld-number stand-in."""
    assert is_phone_number(number) is expected


def test_callback_sentences() -> None:
    """Booked, bad number, unclear key, asking for a number: exact texts in both languages."""
    assert callback_booked("+34612345678", "es-ES") == (
        "Gracias. Le llamaremos al número terminado en 5 6 7 8 cuando llegue su turno. "
        "Ya puede colgar."
    )
    assert callback_booked("+447911123456", "en-GB") == (
        "Thank you. We will call you back on the number ending in 3 4 5 6 when it is your "
        "turn. You may hang up now."
    )
    assert callback_bad_number("es-ES") == "Ese número no es válido."
    assert callback_bad_number("en-US") == "That number is not valid."
    assert callback_unclear("es-ES") == "No hemos recibido ninguna opción válida."
    assert callback_unclear("en-US") == "We did not receive a valid option."
    assert callback_ask_number("es-ES") == (
        "Marque el número en el que quiere que le llamemos, seguido de la tecla almohadilla."
    )
    assert callback_ask_number("en-US") == (
        "Dial the number you want us to call you back on, followed by the pound key."
    )


def test_callback_whisper_names_the_queue() -> None:
    """The agent hears it is a callback, and from which queue."""
    assert callback_whisper("general-queue", "es-ES") == (
        "Devolución de llamada de la cola general-queue. Le pasamos con el cliente."
    )
    assert callback_whisper("ventas", "en-US") == (
        "Callback from the queue ventas. Connecting you to the customer."
    )


@pytest.mark.parametrize(
    ("digits", "country_code", "expected"),
    [
        pytest.param("612345678", "+34", "+34612345678", id="spanish-mobile"),
        pytest.param("912345678", "+34", "+34912345678", id="spanish-landline"),
        pytest.param("0034612345678", "+34", "+34612345678", id="00-prefix"),
        pytest.param("0044791112345", "+34", "+44791112345", id="00-other-country"),
        # UK national 07911 123456: the trunk 0 goes, +44 7911 123456.
        pytest.param("07911123456", "+44", "+447911123456", id="uk-trunk-zero"),
        # Italy keeps the 0 of 06 (Rome) after +39.
        pytest.param("0612345678", "+39", "+390612345678", id="italy-keeps-zero"),
        pytest.param("+34612345678", "+34", "+34612345678", id="already-e164"),
        # 8 digits: too short for a national number.
        pytest.param("12345678", "+34", None, id="8-digits"),
        # 16 digits: too long.
        pytest.param("1234567890123456", "+34", None, id="16-digits"),
        # 15 national digits fit, but +34 and 15 digits is 17 digits: over E.164's 15.
        pytest.param("612345678901234", "+34", None, id="too-long-with-country"),
        # "+0...": a country code cannot start with 0.
        pytest.param("00012345678", "+34", None, id="000"),
        # "+12": too short.
        pytest.param("0012", "+34", None, id="00-too-short"),
        pytest.param("6123*5678", "+34", None, id="star"),
        pytest.param("", "+34", None, id="empty"),
        # 00 266696687 is what Twilio's From carries for a withheld number.
        pytest.param("00266696687", "+34", None, id="withheld-sentinel"),
    ],
)
def test_callback_number(digits: str, country_code: str, expected: str | None) -> None:
    """Typed digits become E.164 or None."""
    assert callback_number(digits, country_code) == expected


def test_callback_number_rejects_a_bad_country_code() -> None:
    """A country code without '+' is a settings mistake, not a caller's."""
    with pytest.raises(ValueError, match="country code must be"):
        callback_number("612345678", "34")
