"""Text-to-speech voices that Twilio's <Say> accepts, and the languages they speak."""

from __future__ import annotations

import difflib
import re

SPANISH_VOICES: dict[str, str] = {
    "Polly.Lucia": "es-ES",
    "Polly.Conchita": "es-ES",
    "Polly.Enrique": "es-ES",
    "Polly.Lucia-Neural": "es-ES",
    "Polly.Sergio-Neural": "es-ES",
    "Polly.Lucia-Generative": "es-ES",
    "Polly.Sergio-Generative": "es-ES",
    "Polly.Mia": "es-MX",
    "Polly.Mia-Neural": "es-MX",
    "Polly.Andres-Neural": "es-MX",
    "Polly.Andres-Generative": "es-MX",
    "Polly.Lupe": "es-US",
    "Polly.Penelope": "es-US",
    "Polly.Miguel": "es-US",
    "Polly.Lupe-Neural": "es-US",
    "Polly.Pedro-Neural": "es-US",
    "Polly.Lupe-Generative": "es-US",
    "Polly.Pedro-Generative": "es-US",
}

_OTHER_POLLY: dict[str, tuple[str, ...]] = {
    "en-US": ("Joanna", "Matthew", "Ivy", "Justin", "Kendra", "Kimberly", "Salli", "Joey"),
    "en-GB": ("Amy", "Brian", "Emma"),
    "fr-FR": ("Celine", "Lea", "Mathieu"),
    "de-DE": ("Marlene", "Vicki", "Hans"),
    "it-IT": ("Carla", "Bianca", "Giorgio"),
    "pt-BR": ("Camila", "Vitoria", "Ricardo"),
    "pt-PT": ("Ines", "Cristiano"),
    "ca-ES": ("Arlet",),
}

KNOWN_VOICES: dict[str, str] = dict(SPANISH_VOICES)
for _language, _names in _OTHER_POLLY.items():
    for _name in _names:
        KNOWN_VOICES[f"Polly.{_name}"] = _language
        KNOWN_VOICES[f"Polly.{_name}-Neural"] = _language

_GOOGLE = re.compile(
    r"^Google\.([a-z]{2,3}-[A-Z]{2})-(Standard|Wavenet|Neural2|Chirp3-HD)-[A-Za-z]+$"
)


def voice_language(voice: str) -> str | None:
    """The language a known voice speaks, or None for a voice Twilio would not know."""
    if voice in KNOWN_VOICES:
        return KNOWN_VOICES[voice]
    google = _GOOGLE.match(voice)
    return google.group(1) if google else None


def suggest_voice(voice: str) -> str | None:
    """The known voice closest to a misspelt one, if any is close."""
    close = difflib.get_close_matches(voice, list(KNOWN_VOICES), n=1, cutoff=0.75)
    return close[0] if close else None
