"""Settings: the seed's environment names, a .env file, and every bad value at start-up."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from flowpbx.settings import Settings, SettingsError
from flowpbx.store.redis import parse_cluster_url


def test_settings_defaults_need_only_a_token() -> None:
    """With just an auth token, the service listens on 3020 and keeps state in memory."""
    settings = Settings.from_env({"TWILIO_AUTH_TOKEN": "t"}, env_file=None)
    assert (settings.port, settings.redis_url, settings.skip_signature) == (3020, None, False)
    assert settings.flows_dir == Path("flows")


def test_settings_reads_seed_names() -> None:
    """PORT, TWILIO_*, REDIS_* and DB_* are read under the original service's names."""
    env = {
        "PORT": "8080",
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        "TWILIO_AUTH_TOKEN": "secret",
        "TWILIO_API_KEY": "SK" + "b" * 32,
        "TWILIO_API_SECRET": "s",
        "TWILIO_PHONE_NUMBER": "+34912345678",
        "TWILIO_TWIML_APP_SID": "AP" + "c" * 32,
        "REDIS_HOST": "redis.internal",
        "REDIS_PORT": "6380",
        "REDIS_PASSWORD": "pw",
        "DB_HOST": "db",
        "DB_PORT": "5433",
        "DB_USER": "u",
        "DB_PASSWORD": "p",
        "DB_NAME": "ait_core",
        "PUBLIC_BASE_URL": "https://pbx.example.com/",
        "FLOWPBX_NUMBERS": "+34912345678=seguros, +34911111111=otro",
        "FLOWPBX_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1",
    }
    settings = Settings.from_env(env, env_file=None)
    assert settings.port == 8080
    assert settings.redis_url == "redis://:pw@redis.internal:6380/0"
    assert (settings.db_host, settings.db_port, settings.db_name) == ("db", 5433, "ait_core")
    assert settings.public_base_url == "https://pbx.example.com"
    assert dict(settings.numbers) == {"+34912345678": "seguros", "+34911111111": "otro"}
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
    )


def test_settings_env_file_fills_gaps(tmp_path: Path) -> None:
    """A .env file provides values the environment does not set; the environment wins."""
    env_file = tmp_path / ".env"
    env_file.write_text("TWILIO_AUTH_TOKEN=from-file\nPORT=4000\n# comment\n", "utf-8")
    settings = Settings.from_env({"PORT": "5000"}, env_file=env_file)
    assert (settings.twilio_auth_token, settings.port) == ("from-file", 5000)


def test_settings_reports_every_bad_value() -> None:
    """Each bad variable is named in one start-up error, not one at a time."""
    env = {
        "PORT": "abc",
        "REDIS_PORT": "70000",
        "TWILIO_ACCOUNT_SID": "XX123",
        "PUBLIC_BASE_URL": "pbx.example.com",
        "FLOWPBX_NUMBERS": "912345678=seguros",
        "FLOWPBX_TRUSTED_PROXIES": "not-an-ip",
        "FLOWPBX_DEV_SKIP_SIGNATURE": "maybe",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env, env_file=None)
    text = str(caught.value)
    for name in (
        "PORT='abc' is not a whole number",
        "REDIS_PORT=70000 is out of range",
        "TWILIO_ACCOUNT_SID='XX123' is not valid",
        "PUBLIC_BASE_URL='pbx.example.com' is not valid",
        "FLOWPBX_NUMBERS: '912345678=seguros' is not valid",
        "FLOWPBX_TRUSTED_PROXIES: 'not-an-ip' is not an IP address",
        "FLOWPBX_DEV_SKIP_SIGNATURE='maybe' is not valid",
        "TWILIO_AUTH_TOKEN is not set",
    ):
        assert name in text


def test_settings_skip_signature_is_explicit() -> None:
    """Without a token the only way to start is the explicit development setting."""
    settings = Settings.from_env({"FLOWPBX_DEV_SKIP_SIGNATURE": "true"}, env_file=None)
    assert settings.skip_signature
    assert settings.twilio_auth_token == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, "", id="default-auto"),
        pytest.param("auto", "", id="auto"),
        pytest.param("open", "open", id="open"),
        pytest.param("CLOSED", "closed", id="closed"),
    ],
)
def test_settings_hours_override(value: str | None, expected: str) -> None:
    """FLOWPBX_HOURS_OVERRIDE forces business hours open or closed; auto follows the clock."""
    env = {"TWILIO_AUTH_TOKEN": "t"} | ({"FLOWPBX_HOURS_OVERRIDE": value} if value else {})
    assert Settings.from_env(env, env_file=None).hours_override == expected


def test_settings_hours_override_rejects_other_values() -> None:
    """A misspelt override is a start-up error, not a silent 'auto'."""
    env = {"TWILIO_AUTH_TOKEN": "t", "FLOWPBX_HOURS_OVERRIDE": "abierto"}
    with pytest.raises(SettingsError, match="FLOWPBX_HOURS_OVERRIDE"):
        Settings.from_env(env, env_file=None)


def test_settings_redis_password_with_reserved_characters() -> None:
    """A Redis password with @ / : is quoted, so the host stays the configured one."""
    env = {"TWILIO_AUTH_TOKEN": "t", "REDIS_HOST": "redis.internal", "REDIS_PASSWORD": "p@ss/w:rd"}
    settings = Settings.from_env(env, env_file=None)
    assert settings.redis_url == "redis://:p%40ss%2Fw%3Ard@redis.internal:6379/0"


def test_settings_redis_cluster_nodes() -> None:
    """REDIS_CLUSTER_NODES (host:port, [IPv6]:port; repeats dropped) with REDIS_PASSWORD makes
    the `redis+cluster://` URL the stores connect with; messages name the nodes, never the
    password."""
    env = {
        "TWILIO_AUTH_TOKEN": "t",
        "REDIS_CLUSTER_NODES": " redis-1:7000, 10.0.0.2:7001,[fd00::3]:7002,redis-1:7000, ",
        "REDIS_PASSWORD": "p@ss/w:rd",
    }
    settings = Settings.from_env(env, env_file=None)
    nodes = (("redis-1", 7000), ("10.0.0.2", 7001), ("fd00::3", 7002))
    assert settings.redis_cluster_nodes == nodes
    url = "redis+cluster://:p%40ss%2Fw%3Ard@redis-1:7000,10.0.0.2:7001,[fd00::3]:7002"
    assert settings.redis_url == url
    address = parse_cluster_url(url)
    assert (address.nodes, address.password) == (nodes, "p@ss/w:rd")
    assert settings.redis_where == "Redis Cluster at redis-1:7000,10.0.0.2:7001,[fd00::3]:7002"
    assert "p@ss" not in repr(settings)
    alone = Settings.from_env({"TWILIO_AUTH_TOKEN": "t", "REDIS_HOST": "r"}, env_file=None)
    assert (alone.redis_cluster_nodes, alone.redis_where) == ((), "Redis at r:6379")
    no_password = {"TWILIO_AUTH_TOKEN": "t", "REDIS_CLUSTER_NODES": "r:1", "REDIS_DB": "0"}
    assert Settings.from_env(no_password, env_file=None).redis_url == "redis+cluster://r:1"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        pytest.param(
            {"REDIS_CLUSTER_NODES": "redis-1:7000", "REDIS_HOST": "redis"},
            "REDIS_HOST and REDIS_CLUSTER_NODES are both set",
            id="both",
        ),
        pytest.param(
            {"REDIS_CLUSTER_NODES": "redis-1:7000", "REDIS_DB": "2"},
            "REDIS_DB=2 cannot be used with REDIS_CLUSTER_NODES",
            id="database",
        ),
        pytest.param(
            {"REDIS_CLUSTER_NODES": "redis-1"},
            "'redis-1' is not a node: expected host:port",
            id="port",
        ),
        pytest.param(
            {"REDIS_CLUSTER_NODES": "redis-1:0"}, "'redis-1:0' is not a node", id="port-zero"
        ),
        pytest.param(
            {"REDIS_CLUSTER_NODES": "r:7000,r:70000"}, "'r:70000' is not a node", id="port-high"
        ),
        pytest.param(
            {"REDIS_CLUSTER_NODES": "fd00::3:7000"}, "'fd00::3:7000' is not a node", id="bare-v6"
        ),
        pytest.param({"REDIS_CLUSTER_NODES": "[zz::1]:7000"}, "'[zz::1]:7000'", id="bad-v6"),
        pytest.param(
            {"REDIS_CLUSTER_NODES": "redis://r:7000"}, "'redis://r:7000' is not a node", id="url"
        ),
    ],
)
def test_settings_redis_cluster_problems(env: dict[str, str], problem: str) -> None:
    """A cluster setting that cannot work is reported at start-up, saying what to set."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"TWILIO_AUTH_TOKEN": "t", **env}, env_file=None)
    assert problem in str(caught.value)


def test_settings_redis_cluster_problems_are_reported_together() -> None:
    env = {
        "TWILIO_AUTH_TOKEN": "t",
        "REDIS_HOST": "redis",
        "REDIS_DB": "1",
        "REDIS_CLUSTER_NODES": "a:1,b",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env, env_file=None)
    assert len(caught.value.problems) == 3


def test_settings_repr_hides_secrets() -> None:
    """Printing settings (in a log or a traceback) does not show tokens or passwords."""
    env = {"TWILIO_AUTH_TOKEN": "tok-secret", "REDIS_PASSWORD": "redis-secret"}
    text = repr(Settings.from_env(env, env_file=None))
    assert "tok-secret" not in text
    assert "redis-secret" not in text


def test_settings_store_retry_and_event_limits() -> None:
    """The store's retry time and the call-event backlog are read, with defaults and bounds."""
    defaults = Settings.from_env({"TWILIO_AUTH_TOKEN": "t"}, env_file=None)
    assert (defaults.store_retry_seconds, defaults.events_max) == (5, 500_000)
    assert defaults.history_writer is True
    env = {
        "TWILIO_AUTH_TOKEN": "t",
        "FLOWPBX_STORE_RETRY_SECONDS": "2",
        "FLOWPBX_EVENTS_MAX": "5000",
    }
    chosen = Settings.from_env(env, env_file=None)
    assert (chosen.store_retry_seconds, chosen.events_max) == (2, 5000)
    bad = {"TWILIO_AUTH_TOKEN": "t", "FLOWPBX_STORE_RETRY_SECONDS": "30", "FLOWPBX_EVENTS_MAX": "9"}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(bad, env_file=None)
    assert caught.value.problems == [
        "FLOWPBX_STORE_RETRY_SECONDS=30 is out of range: expected 0 to 10",
        "FLOWPBX_EVENTS_MAX=9 is out of range: expected 1000 to 10000000",
    ]


def test_database_url_from_database_url_db_variables_or_the_sqlite_file() -> None:
    token = {"TWILIO_AUTH_TOKEN": "t"}
    embedded = Settings.from_env(token, env_file=None)
    assert embedded.database_url == "sqlite:///data/flowpbx.sqlite3"
    assert embedded.database_kind == "sqlite"
    moved = Settings.from_env({**token, "FLOWPBX_DB_PATH": "/var/lib/flowpbx/db"}, env_file=None)
    assert moved.database_url == "sqlite:////var/lib/flowpbx/db"
    seed = {
        **token,
        "DB_HOST": "db",
        "DB_PORT": "5433",
        "DB_USER": "app user",
        "DB_PASSWORD": "p@ss/word",
        "DB_NAME": "ait_core",
    }
    postgres = Settings.from_env(seed, env_file=None)
    assert postgres.database_url == "postgresql+psycopg://app%20user:p%40ss%2Fword@db:5433/ait_core"
    assert postgres.database_kind == "postgresql"
    url = "postgres://x:y@elsewhere:5432/z"
    assert Settings.from_env({**seed, "DATABASE_URL": url}, env_file=None).database_url == url


def test_bad_rest_settings_are_all_reported() -> None:
    env = {
        "TWILIO_AUTH_TOKEN": "t",
        "DB_HOST": "db",
        "DATABASE_URL_": "",
        "FLOWPBX_TOKEN_TTL": "90000",
        "FLOWPBX_CALLS_PER_SECOND": "fast",
        "FLOWPBX_CALL_ALLOWED_PREFIXES": "+34, 0044",
        "FLOWPBX_CORS_ORIGINS": "https://agents.example.com, agents.example.com",
        "FLOWPBX_TWILIO_API_URL": "localhost:8099",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env, env_file=None)
    problems = caught.value.problems
    assert "FLOWPBX_TOKEN_TTL=90000 is out of range: expected 60 to 86400" in problems
    assert "FLOWPBX_CALLS_PER_SECOND='fast' is not a number" in problems
    assert (
        "FLOWPBX_CALL_ALLOWED_PREFIXES: '0044' is not a number prefix: expected + and digits, "
        "like +34" in problems
    )
    assert (
        "FLOWPBX_CORS_ORIGINS: 'agents.example.com' is not an origin: expected like "
        "https://agents.example.com" in problems
    )
    assert any(p.startswith("FLOWPBX_TWILIO_API_URL=") for p in problems)
    assert "DB_HOST is set but DB_USER is not: set DB_USER (or DATABASE_URL)" in problems
    assert "DB_HOST is set but DB_NAME is not: set DB_NAME (or DATABASE_URL)" in problems
    with pytest.raises(SettingsError, match="DATABASE_URL is not valid"):
        Settings.from_env({"TWILIO_AUTH_TOKEN": "t", "DATABASE_URL": "mysql://x"}, env_file=None)


def test_rest_settings_defaults_and_values() -> None:
    defaults = Settings.from_env({"TWILIO_AUTH_TOKEN": "t"}, env_file=None)
    assert defaults.token_ttl == 3600
    assert defaults.calls_per_second == 1.0
    assert defaults.allowed_prefixes == ("+34",)
    assert "+34806" in defaults.blocked_prefixes
    assert defaults.cors_origins == ()
    assert defaults.db_upgrade_on_start is True
    env = {
        "TWILIO_AUTH_TOKEN": "t",
        "FLOWPBX_CALL_ALLOWED_PREFIXES": "",
        "FLOWPBX_CALL_BLOCKED_PREFIXES": "+3480, +3490",
        "FLOWPBX_CORS_ORIGINS": "https://agents.example.com/",
        "FLOWPBX_CALLS_PER_SECOND": "2.5",
        "FLOWPBX_DB_UPGRADE": "false",
    }
    settings = Settings.from_env(env, env_file=None)
    assert settings.allowed_prefixes == ()  # every country
    assert settings.blocked_prefixes == ("+3480", "+3490")
    assert settings.cors_origins == ("https://agents.example.com",)
    assert settings.calls_per_second == 2.5
    assert settings.db_upgrade_on_start is False


def test_database_commands_need_no_auth_token() -> None:
    assert Settings.from_env({}, env_file=None, webhooks=False).twilio_auth_token == ""
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN is not set"):
        Settings.from_env({}, env_file=None)
