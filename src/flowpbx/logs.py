"""Logs: one JSON object per line (or a line for people to read), every line with its call.

Every `logging.getLogger(...)` call in flowpbx and its libraries (uvicorn too) goes through one
handler on the root logger, whose formatter (structlog's `ProcessorFormatter`) renders each
record as

    {"timestamp": "2026-11-24T09:00:00.123456Z", "level": "warning", "logger": "flowpbx.calls",
     "event": "call CA...: recovered (state_lost) at menu_principal", "pid": 4242,
     "call_sid": "CA..."}

with the process that wrote it (`pid`: the workers of `flowpbx serve --workers N` write to one
stream), the context bound in the current task (`about_call`: the CallSid of the webhook being
answered) and `extra=` fields. Before a line is written, wherever they stand in it (the
message, a field, a nested value, a traceback):

- phone numbers are masked (`flowpbx.privacy.mask_numbers`: "+34******678");
- secrets are redacted: the configured ones (`secrets_of`: the auth token, the API secret, the
  Redis and database passwords, the metrics token), flowpbx API keys (their public prefix
  stays), access tokens (JWTs), `Basic`/`Bearer` credentials, a URL's password,
  `token=...`-like pairs, and the value of any field named like a signature, token, password,
  secret or authorization.

See docs/operations.md (section 6) and docs/privacy.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO
from urllib.parse import quote, unquote, urlsplit

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from flowpbx.privacy import mask_numbers

if TYPE_CHECKING:
    from flowpbx.settings import Settings

Tokens = Mapping[str, contextvars.Token[Any]]

FORMATS: Final = ("json", "console")
"""LOG_FORMAT: JSON lines for log collectors; `console` for a person at a terminal."""
REDACTED: Final = "[redacted]"
MIN_SECRET: Final = 8
"""Configured secrets shorter than this are not searched for in every line (a password such
as `flowpbx` would blank out every mention of the word); the patterns still catch them in
URLs, credentials and `password=` pairs."""
QUIET: Final = {"alembic": logging.WARNING, "twilio": logging.WARNING}
"""Libraries that say too much at INFO (twilio: eight lines per REST request, with headers)."""

_SENSITIVE_KEY: Final = re.compile(
    r"(?i)signature|token|passw(?:or)?d|secret|authori[sz]ation|api[_-]?key|cookie|credential"
)
"""Fields whose value is never written, whatever it is."""
_KEYWORD: Final = r"signature|token|passw(?:or)?d|secret|api[_-]?key|authori[sz]ation"
_PATTERNS: Final[tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...]] = (
    # (what the lowercased text must contain for the pattern to be tried: a cheap test that
    # spares most lines the regular expressions; the pattern; its replacement)
    # A URL's password: postgresql://user:secret@host, redis://:secret@host.
    (
        ("://",),
        re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@/'\"]+@"),
        rf"\1{REDACTED}@",
    ),
    # Credentials in an Authorization header's form.
    (
        ("basic", "bearer", "digest"),
        re.compile(r"(?i)\b(basic|bearer|digest)(\s+)[A-Za-z0-9._~+/=-]{8,}"),
        rf"\1\2{REDACTED}",
    ),
    # flowpbx API keys (db/apikeys.py): the public prefix names the key, the rest is secret.
    (("fpbx_",), re.compile(r"\b(fpbx_[0-9a-f]{8}_)[A-Za-z0-9_-]+"), rf"\1{REDACTED}"),
    # Access tokens (JWTs: softphone tokens).
    (("eyj",), re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # token=..., 'X-Twilio-Signature': '...', password: ... inside a message; not the last
    # part of a path ("POST /api/token: no API key"), nor a scheme already handled above.
    (
        ("signature", "token", "passw", "secret", "api", "authori"),
        re.compile(
            rf"(?i)(?<!/)((?:{_KEYWORD})['\"]?\s*[:=]\s*['\"]?)"
            rf"(?!\[redacted\]|(?:basic|bearer|digest)\s)[^\s'\"&,;)}}\]]+"
        ),
        rf"\1{REDACTED}",
    ),
)
_NOT_CLEANED: Final = frozenset({"timestamp", "level", "logger", "pid"})
"""Fields flowpbx itself fills with nothing personal or secret."""
_DROPPED_EXTRAS: Final = ("color_message", "message", "asctime")
"""Record attributes that are not context: uvicorn's colored copy of a message, and what
another handler's formatter left on the record."""


class Redactor:
    """The last word before a line is written: secrets redacted, phone numbers masked, in
    every string of the event (nested ones too); fields named like a secret lose their value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET:
                values |= {secret, quote(secret, safe=""), quote(secret)}
        # Longest first: a secret that contains another is redacted whole.
        ordered = sorted(values, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, text: str) -> str:
        """`text` fit for a log line."""
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        lower = text.lower()
        for hints, pattern, replacement in _PATTERNS:
            if any(hint in lower for hint in hints):
                text = pattern.sub(replacement, text)
        return mask_numbers(text)

    def value(self, value: object) -> object:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                key: REDACTED if _is_sensitive(key) else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item) for item in value]
        return value

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            if key in _NOT_CLEANED:
                continue
            event[key] = REDACTED if _is_sensitive(key) else self.value(value)
        return event


def _is_sensitive(key: object) -> bool:
    return isinstance(key, str) and _SENSITIVE_KEY.search(key) is not None


def _drop_extras(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    for key in _DROPPED_EXTRAS:
        event.pop(key, None)
    return event


def _stack(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """A foreign record's `stack_info` (already text) under the name structlog gives it."""
    stack = event.pop("stack_info", None)
    if isinstance(stack, str):
        event["stack"] = stack
    return event


def _pid(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """The process that wrote the line: the one its log record was made in (`logging` notes
    it on every record, in a forked or spawned process as in any other), else this one."""
    record = event.get("_record")
    pid = getattr(record, "process", None)
    event["pid"] = pid if isinstance(pid, int) else os.getpid()
    return event


def _in_order(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """timestamp, level, logger, event and pid first, for people reading raw lines."""
    ordered = {
        key: event.pop(key)
        for key in ("timestamp", "level", "logger", "event", "pid")
        if key in event
    }
    ordered.update(event)
    return ordered


def _shared() -> list[Processor]:
    """What every line gets, from structlog's loggers and from the standard library's."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def log_formatter(
    fmt: str = "json", *, secrets: Iterable[str] = (), colors: bool = False
) -> logging.Formatter:
    """The formatter of flowpbx's log handler: JSON lines (`fmt` "json") or a line for people
    ("console", in color with `colors`), secrets redacted and numbers masked in both."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {FORMATS}")
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *_shared(),
            structlog.stdlib.ExtraAdder(),
            _drop_extras,
        ],
        processors=[
            _pid,  # before the record is removed from the event
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _stack,
            # The traceback as one string, so that it is redacted and masked like the rest.
            structlog.processors.format_exc_info,
            Redactor(secrets),
            _in_order,
            renderer,
        ],
    )


class _Handler(logging.StreamHandler[TextIO]):
    """flowpbx's handler on the root logger: writes to the standard error of the moment (or to
    the stream it was given)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._fixed = stream is not None

    def emit(self, record: logging.LogRecord) -> None:
        if not self._fixed:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(
    level: str, fmt: str = "json", *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Send every log record of this process through flowpbx's formatter (`log_formatter`) to
    standard error (or `stream`), at `level` (LOG_LEVEL) and up, as `fmt` (LOG_FORMAT), with
    `secrets` (see `secrets_of`) redacted. Call it again to change them: it replaces its own
    handler. Like `logging.basicConfig`, it leaves a process whose logging someone else set up
    (a program embedding flowpbx, a test runner) as it is."""
    root = logging.getLogger()
    if any(not isinstance(handler, _Handler) for handler in root.handlers):
        return
    handler = _Handler(stream)
    target = stream if stream is not None else sys.stderr
    colors = fmt == "console" and target.isatty()
    handler.setFormatter(log_formatter(fmt, secrets=secrets, colors=colors))
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(quiet)
    # structlog's own loggers (structlog.get_logger()) end in the same handler.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def secrets_of(settings: Settings) -> tuple[str, ...]:
    """The configured values no log line may show: the Twilio auth token and API secret, the
    Redis and database passwords (DATABASE_URL's and DATABASE_READ_URL's too, as written and
    URL-decoded) and the metrics token (FLOWPBX_METRICS_TOKEN)."""
    found = [
        settings.twilio_auth_token,
        settings.twilio_api_secret,
        settings.redis_password,
        settings.db_password,
        settings.metrics_token,
    ]
    for url in (settings.database_url_override, settings.database_read_url):
        if not url:
            continue
        with contextlib.suppress(ValueError):
            password = urlsplit(url).password
            if password:
                found += [password, unquote(password)]
    return tuple(dict.fromkeys(secret for secret in found if secret))


@contextlib.contextmanager
def about_call(call_sid: str | None) -> Iterator[None]:
    """Every line logged inside the block (by this task, and by the tasks it starts) carries
    `call_sid`; afterwards the context is as it was. None binds nothing."""
    if call_sid is None:
        yield
        return
    tokens = structlog.contextvars.bind_contextvars(call_sid=call_sid)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def bind_call(call_sid: str) -> Tokens:
    """Bind `call_sid` to the lines logged from here on in this task (see `about_call`); give
    the result to `unbind_call` when done."""
    return structlog.contextvars.bind_contextvars(call_sid=call_sid)


def unbind_call(tokens: Tokens) -> None:
    """Undo `bind_call`."""
    structlog.contextvars.reset_contextvars(**tokens)
