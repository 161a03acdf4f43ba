"""Typed settings from the environment (and a .env file), checked at start-up.

Names follow the original service: PORT, TWILIO_*, REDIS_*, DB_*; flowpbx's own start FLOWPBX_.
Every bad value is reported at once, before the first call arrives.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from starlette.config import Config

from flowpbx.errors import FlowpbxError

DEFAULT_PORT = 3020
DEFAULT_CALL_TTL = 6 * 3600
DEFAULT_STORE_RETRY = 5.0
DEFAULT_EVENTS_MAX = 500_000
DEFAULT_READY_BACKLOG = 0.9
"""/readyz fails once the history backlog passes this fraction of what the call store keeps."""
DEFAULT_DB_PATH = Path("data/flowpbx.sqlite3")
DEFAULT_TOKEN_TTL = 3600
MAX_TOKEN_TTL = 24 * 3600
DEFAULT_CALLS_PER_SECOND = 1.0
DEFAULT_CALL_WAIT = 20
MAX_WORKERS = 64
DEFAULT_ALLOWED_PREFIXES = ("+34",)
DEFAULT_BLOCKED_PREFIXES = ("+34803", "+34806", "+34807", "+34905", "+34118", "+3470")
"""Spain's premium-rate (803, 806, 807), televoting (905), directory (118) and personal (70)
numbers: expensive to call and favourite targets of toll fraud."""
_PREFIX = re.compile(r"^\+[0-9]{1,14}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(FlowpbxError):
    """Configuration that cannot work; lists every bad variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    twilio_account_sid: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    twilio_api_key: str = ""
    twilio_api_secret: str = field(default="", repr=False)
    twilio_phone_number: str = ""
    twilio_twiml_app_sid: str = ""
    redis_host: str = ""
    redis_port: int = 6379
    redis_password: str = field(default="", repr=False)
    redis_db: int = 0
    redis_cluster_nodes: tuple[tuple[str, int], ...] = ()
    """REDIS_CLUSTER_NODES: seed nodes of a Redis Cluster (host, port); empty for one Redis."""
    db_host: str = ""
    db_port: int = 5432
    db_user: str = ""
    db_password: str = field(default="", repr=False)
    db_name: str = ""
    database_url_override: str = field(default="", repr=False)
    database_read_url: str = field(default="", repr=False)
    """DATABASE_READ_URL: where the call history, analytics and queue statistics endpoints read
    (a PostgreSQL read replica); empty: the database above."""
    db_path: Path = DEFAULT_DB_PATH
    db_upgrade_on_start: bool = True
    token_ttl: int = DEFAULT_TOKEN_TTL
    cors_origins: tuple[str, ...] = ()
    twilio_api_url: str = ""
    calls_per_second: float = DEFAULT_CALLS_PER_SECOND
    call_wait: int = DEFAULT_CALL_WAIT
    allowed_prefixes: tuple[str, ...] = DEFAULT_ALLOWED_PREFIXES
    blocked_prefixes: tuple[str, ...] = DEFAULT_BLOCKED_PREFIXES
    public_base_url: str = ""
    flows_dir: Path = Path("flows")
    default_flow: str = ""
    numbers: Mapping[str, str] = field(default_factory=dict)
    trusted_proxies: tuple[Network, ...] = ()
    skip_signature: bool = False
    call_ttl: int = DEFAULT_CALL_TTL
    store_retry_seconds: float = DEFAULT_STORE_RETRY
    events_max: int = DEFAULT_EVENTS_MAX
    ready_backlog: float = DEFAULT_READY_BACKLOG
    """FLOWPBX_READY_BACKLOG: /readyz fails once the history backlog passes this fraction of
    the entries the call store keeps (0: the backlog is not checked)."""
    metrics_token: str = field(default="", repr=False)
    """FLOWPBX_METRICS_TOKEN: /metrics then needs `Authorization: Bearer <token>`."""
    history_writer: bool = True
    """Run the history writer inside `flowpbx serve` (off when `flowpbx history-writer` runs
    apart)."""
    queue_scheduler: bool = True
    """Offer queued callers to agents from this process (every process may: they share the
    work through locks in Redis)."""
    queue_tick: float = 0.25
    """Seconds between the queue scheduler's rounds when nothing wakes it earlier."""
    callback_delay: float = 15.0
    """Seconds a callback just booked waits before it may be placed (the caller hangs up)."""
    hours_override: str = ""
    log_level: str = "INFO"
    log_format: str = "json"
    """LOG_FORMAT: 'json' (one JSON object per line, for log collectors) or 'console' (for a
    person at a terminal); see flowpbx.logs."""
    flows_reload: float = 1.0
    """Seconds between looks at the flows folder for changed files (0: reload only on SIGHUP
    or `flowpbx reload`)."""
    run_dir: Path = Path("data")
    """Where `flowpbx serve` writes its pid file, for `flowpbx reload`."""
    workers: int = 1
    """Worker processes of `flowpbx serve` on its one port (FLOWPBX_WORKERS; more than one
    needs Redis)."""

    @property
    def redis_url(self) -> str | None:
        """The Redis URL, or None to keep call state in this process. A Redis Cluster is
        `redis+cluster://[:password@]host:port,host:port,...` (`flowpbx.store.redis.connect`
        makes the client for either)."""
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        if self.redis_cluster_nodes:
            nodes = ",".join(_host_port(host, port) for host, port in self.redis_cluster_nodes)
            return f"redis+cluster://{auth}{nodes}"
        if not self.redis_host:
            return None
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def redis_where(self) -> str:
        """Where call state lives, for messages (no password): 'Redis at host:port', 'Redis
        Cluster at host:port,...' or 'this process'."""
        if self.redis_cluster_nodes:
            nodes = ",".join(_host_port(host, port) for host, port in self.redis_cluster_nodes)
            return f"Redis Cluster at {nodes}"
        if self.redis_host:
            return f"Redis at {_host_port(self.redis_host, self.redis_port)}"
        return "this process"

    @property
    def database_url(self) -> str:
        """DATABASE_URL, else PostgreSQL from DB_HOST and the other DB_ variables, else the
        embedded SQLite file (FLOWPBX_DB_PATH)."""
        if self.database_url_override:
            return self.database_url_override
        if self.db_host:
            auth = quote(self.db_user, safe="")
            if self.db_password:
                auth += ":" + quote(self.db_password, safe="")
            return (
                f"postgresql+psycopg://{auth}@{self.db_host}:{self.db_port}/"
                f"{quote(self.db_name, safe='')}"
            )
        return f"sqlite:///{self.db_path}"

    @property
    def database_kind(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: Path | None = Path(".env"),
        *,
        webhooks: bool = True,
    ) -> Settings:
        """Read settings; a .env file fills in what the environment does not set. With
        `webhooks` False (commands that only use the database), no auth token is needed."""
        file = env_file if env_file is not None and env_file.is_file() else None
        config = Config(file, environ=dict(os.environ if environ is None else environ))
        reader = _Reader(config)
        settings = cls(
            host=reader.text("HOST", "0.0.0.0"),
            port=reader.integer("PORT", DEFAULT_PORT, 1, 65535),
            twilio_account_sid=reader.text("TWILIO_ACCOUNT_SID", "", r"AC[0-9a-fA-F]{32}"),
            twilio_auth_token=reader.text("TWILIO_AUTH_TOKEN", ""),
            twilio_api_key=reader.text("TWILIO_API_KEY", "", r"SK[0-9a-fA-F]{32}"),
            twilio_api_secret=reader.text("TWILIO_API_SECRET", ""),
            twilio_phone_number=reader.text("TWILIO_PHONE_NUMBER", "", _E164.pattern[1:-1]),
            twilio_twiml_app_sid=reader.text("TWILIO_TWIML_APP_SID", "", r"AP[0-9a-fA-F]{32}"),
            redis_host=reader.text("REDIS_HOST", ""),
            redis_port=reader.integer("REDIS_PORT", 6379, 1, 65535),
            redis_password=reader.text("REDIS_PASSWORD", ""),
            redis_db=reader.integer("REDIS_DB", 0, 0, 1000),
            redis_cluster_nodes=reader.cluster_nodes("REDIS_CLUSTER_NODES"),
            db_host=reader.text("DB_HOST", ""),
            db_port=reader.integer("DB_PORT", 5432, 1, 65535),
            db_user=reader.text("DB_USER", ""),
            db_password=reader.text("DB_PASSWORD", ""),
            db_name=reader.text("DB_NAME", ""),
            database_url_override=reader.database_url("DATABASE_URL"),
            database_read_url=reader.database_url("DATABASE_READ_URL"),
            db_path=Path(reader.text("FLOWPBX_DB_PATH", str(DEFAULT_DB_PATH))),
            db_upgrade_on_start=reader.boolean("FLOWPBX_DB_UPGRADE", default=True),
            token_ttl=reader.integer("FLOWPBX_TOKEN_TTL", DEFAULT_TOKEN_TTL, 60, MAX_TOKEN_TTL),
            cors_origins=reader.origins("FLOWPBX_CORS_ORIGINS"),
            twilio_api_url=reader.base_url("FLOWPBX_TWILIO_API_URL"),
            calls_per_second=reader.number(
                "FLOWPBX_CALLS_PER_SECOND", DEFAULT_CALLS_PER_SECOND, 0.01, 1000
            ),
            call_wait=reader.integer("FLOWPBX_CALL_WAIT_SECONDS", DEFAULT_CALL_WAIT, 0, 3600),
            allowed_prefixes=reader.prefixes(
                "FLOWPBX_CALL_ALLOWED_PREFIXES", DEFAULT_ALLOWED_PREFIXES
            ),
            blocked_prefixes=reader.prefixes(
                "FLOWPBX_CALL_BLOCKED_PREFIXES", DEFAULT_BLOCKED_PREFIXES
            ),
            public_base_url=reader.base_url("PUBLIC_BASE_URL"),
            flows_dir=Path(reader.text("FLOWPBX_FLOWS_DIR", "flows")),
            default_flow=reader.text("FLOWPBX_DEFAULT_FLOW", ""),
            numbers=reader.numbers("FLOWPBX_NUMBERS"),
            trusted_proxies=reader.networks("FLOWPBX_TRUSTED_PROXIES"),
            skip_signature=reader.boolean("FLOWPBX_DEV_SKIP_SIGNATURE", default=False),
            call_ttl=reader.integer("FLOWPBX_CALL_TTL", DEFAULT_CALL_TTL, 60, 7 * 86400),
            store_retry_seconds=reader.integer(
                "FLOWPBX_STORE_RETRY_SECONDS", int(DEFAULT_STORE_RETRY), 0, 10
            ),
            events_max=reader.integer("FLOWPBX_EVENTS_MAX", DEFAULT_EVENTS_MAX, 1000, 10_000_000),
            ready_backlog=reader.number("FLOWPBX_READY_BACKLOG", DEFAULT_READY_BACKLOG, 0.0, 1.0),
            metrics_token=reader.text("FLOWPBX_METRICS_TOKEN", ""),
            history_writer=reader.boolean("FLOWPBX_HISTORY_WRITER", default=True),
            queue_scheduler=reader.boolean("FLOWPBX_QUEUE_SCHEDULER", default=True),
            queue_tick=reader.number("FLOWPBX_QUEUE_TICK", 0.25, 0.01, 10.0),
            callback_delay=reader.number("FLOWPBX_CALLBACK_DELAY", 15.0, 0.0, 600.0),
            hours_override=reader.hours_override("FLOWPBX_HOURS_OVERRIDE"),
            log_level=reader.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            log_format=reader.choice("LOG_FORMAT", "JSON", ("JSON", "CONSOLE")).lower(),
            flows_reload=reader.number("FLOWPBX_FLOWS_RELOAD", 1.0, 0.0, 3600.0),
            run_dir=Path(reader.text("FLOWPBX_RUN_DIR", "data")),
            workers=reader.integer("FLOWPBX_WORKERS", 1, 1, MAX_WORKERS),
        )
        if webhooks and not settings.twilio_auth_token and not settings.skip_signature:
            reader.problems.append(
                "TWILIO_AUTH_TOKEN is not set: webhooks cannot be verified. Set it to the "
                "account's auth token (or, for local development only, "
                "FLOWPBX_DEV_SKIP_SIGNATURE=true)"
            )
        if settings.redis_cluster_nodes and settings.redis_host:
            reader.problems.append(
                "REDIS_HOST and REDIS_CLUSTER_NODES are both set: set REDIS_CLUSTER_NODES for a "
                "Redis Cluster or REDIS_HOST for one Redis, not both (unset REDIS_HOST)"
            )
        if settings.redis_cluster_nodes and settings.redis_db != 0:
            reader.problems.append(
                f"REDIS_DB={settings.redis_db} cannot be used with REDIS_CLUSTER_NODES: a Redis "
                "Cluster has database 0 only (unset REDIS_DB or set it to 0)"
            )
        if settings.db_host and not settings.database_url_override:
            for name, value in (("DB_USER", settings.db_user), ("DB_NAME", settings.db_name)):
                if not value:
                    reader.problems.append(
                        f"DB_HOST is set but {name} is not: set {name} (or DATABASE_URL)"
                    )
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


class _Reader:
    """Reads variables, collecting a problem for each bad one instead of stopping."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.problems: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self.config(name, default=None)
        return None if value is None else str(value).strip()

    def text(self, name: str, default: str, pattern: str | None = None) -> str:
        value = self._raw(name)
        if value is None or value == "":
            return default
        if pattern and not re.fullmatch(pattern, value):
            self.problems.append(f"{name}={value!r} is not valid: expected {pattern}")
            return default
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self._raw(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{name}={value!r} is not a whole number")
            return default
        if not low <= number <= high:
            self.problems.append(f"{name}={number} is out of range: expected {low} to {high}")
            return default
        return number

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        self.problems.append(f"{name}={value!r} is not valid: expected true or false")
        return default

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self._raw(name)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            self.problems.append(f"{name}={value!r} is not a number")
            return default
        if not low <= number <= high:
            self.problems.append(f"{name}={value} is out of range: expected {low:g} to {high:g}")
            return default
        return number

    def database_url(self, name: str) -> str:
        value = self._raw(name) or ""
        if not value:
            return ""
        scheme = value.partition("://")[0].partition("+")[0]
        if scheme not in ("postgres", "postgresql", "sqlite"):
            self.problems.append(
                f"{name} is not valid: expected postgresql://user:password@host:5432/name "
                "or sqlite:///path/to/file.sqlite3"
            )
            return ""
        return value

    def origins(self, name: str) -> tuple[str, ...]:
        value = self._raw(name) or ""
        origins: list[str] = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            parts = urlsplit(item)
            if item != "*" and (
                parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/")
            ):
                self.problems.append(
                    f"{name}: {item!r} is not an origin: expected like https://agents.example.com"
                )
                continue
            origins.append(item.rstrip("/"))
        return tuple(origins)

    def prefixes(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._raw(name)
        if value is None:
            return default
        prefixes: list[str] = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            if not _PREFIX.match(item):
                self.problems.append(
                    f"{name}: {item!r} is not a number prefix: expected + and digits, like +34"
                )
                continue
            prefixes.append(item)
        return tuple(prefixes)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self._raw(name) or default).upper()
        if value not in choices:
            self.problems.append(f"{name}={value!r} is not valid: expected one of {choices}")
            return default
        return value

    def hours_override(self, name: str) -> str:
        """'open' or 'closed' to force business hours; '' (auto) follows the clock."""
        value = self.choice(name, "AUTO", ("AUTO", "OPEN", "CLOSED"))
        return "" if value == "AUTO" else value.lower()

    def base_url(self, name: str) -> str:
        value = self._raw(name) or ""
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            self.problems.append(
                f"{name}={value!r} is not valid: expected the public address Twilio calls, "
                "like https://pbx.example.com"
            )
            return ""
        return value.rstrip("/")

    def numbers(self, name: str) -> dict[str, str]:
        value = self._raw(name) or ""
        numbers: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            number, _, flow = item.partition("=")
            if not _E164.match(number.strip()) or not flow.strip():
                self.problems.append(
                    f"{name}: {item!r} is not valid: expected +34912345678=flow_name, "
                    "separated by commas"
                )
                continue
            numbers[number.strip()] = flow.strip()
        return numbers

    def cluster_nodes(self, name: str) -> tuple[tuple[str, int], ...]:
        """`host:port,host:port,...` ([v6-address]:port for IPv6), at least one."""
        value = self._raw(name) or ""
        nodes: list[tuple[str, int]] = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            node = _parse_node(item)
            if node is None:
                self.problems.append(
                    f"{name}: {item!r} is not a node: expected host:port (port 1 to 65535), "
                    "like redis-1:6379, separated by commas"
                )
            elif node not in nodes:
                nodes.append(node)
        return tuple(nodes)

    def networks(self, name: str) -> tuple[Network, ...]:
        value = self._raw(name) or ""
        networks: list[Network] = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.problems.append(f"{name}: {item!r} is not an IP address or network")
        return tuple(networks)


_NODE = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})$"
)


def _parse_node(item: str) -> tuple[str, int] | None:
    """A cluster node `host:port` or `[v6-address]:port`, or None."""
    match = _NODE.match(item)
    if not match:
        return None
    port = int(match["port"])
    host = match["host"] or match["v6"]
    if not 1 <= port <= 65535:
        return None
    if match["v6"]:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return host, port


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
