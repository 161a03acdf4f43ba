"""Start real Redis and PostgreSQL servers from their binaries for the test suite.

Each helper is a context manager that launches a private, throw-away server on a
free TCP port of 127.0.0.1, with all of its state in a fresh temporary directory,
waits until it answers, yields a small description of it (host, port, URL, ...)
and on exit kills the server and removes the directory.

Missing binaries are a hard error (``RuntimeError``), never a skip: the suite is
meant to run against real servers, which ``scripts/install-servers`` installs.

PostgreSQL refuses to run as root. When the tests run as root, the temporary
directory is handed to the ``postgres`` system user (created by Debian's
``postgresql`` package) and every PostgreSQL binary is run through
``runuser -u postgres --``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "PostgresServer",
    "RedisClusterServer",
    "RedisServer",
    "find_postgres_bin_dir",
    "pg_user_prefix",
    "postgres_server",
    "redis_cluster",
    "redis_command",
    "redis_server",
]

HOST = "127.0.0.1"
INSTALL_HINT = "run scripts/install-servers to install it"
PG_SYSTEM_USER = "postgres"
REDIS_START_TIMEOUT = 10.0
POSTGRES_START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# Attempts at starting a server before giving up when its port was taken
# between choosing it and the server binding it.
PORT_ATTEMPTS = 3
_PORT_IN_USE = re.compile(r"address already in use|could not bind|could not create listen", re.I)


class _PortTakenError(Exception):
    """The server could not bind the port chosen for it."""


@dataclass
class RedisServer:
    """A running redis-server reachable over TCP, which a test may stop, restart or pause.

    With ``persistent`` the server keeps an append-only file in its directory, so that a
    restart finds the data again (a restart of a production Redis with AOF on); without it,
    a restart comes back empty (a Redis that lost its data).
    """

    host: str
    port: int
    workdir: Path
    persistent: bool = False
    binary: str = "redis-server"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL, database 0."""
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        """Stop the server (clients now get connection refused)."""
        if self.process is not None:
            _stop_process(self.process)
            self.process = None

    def start(self) -> None:
        """Start the server again on the same port and directory; waits until it answers."""
        assert self.process is None, "redis-server is already running"
        self.process = _launch_redis(self.binary, self.workdir, self.port, self.persistent)

    def restart(self) -> None:
        """Stop, then start on the same port (empty unless ``persistent``)."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@dataclass
class _PgProcess:
    """The running server process of a PostgresServer, replaced by a restart."""

    proc: subprocess.Popen[bytes] | None
    data_dir: Path
    env: Mapping[str, str]


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server with a database and a password-protected role."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    bin_dir: Path
    socket_dir: Path
    process: _PgProcess | None = field(default=None, compare=False, repr=False)

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut, as in a crash of the database
        host); `start` brings it back on the same port with its data."""
        assert self.process is not None, "not started by postgres_server()"
        assert self.process.proc is not None, "not running"
        _stop_postgres(
            self.bin_dir, self.process.data_dir, self.process.proc, self.process.env, mode="fast"
        )
        self.process.proc = None

    def start(self) -> None:
        assert self.process is not None, "not started by postgres_server()"
        assert self.process.proc is None, "already running"
        self.process.proc, _ = _start_postgres(
            self.bin_dir,
            self.socket_dir,
            self.process.data_dir,
            self.user,
            self.process.env,
            port=self.port,
        )

    @property
    def url(self) -> str:
        """SQLAlchemy URL for the psycopg (v3) driver."""
        return (
            f"postgresql+psycopg://{self.user}:{self.password}"
            f"@{self.host}:{self.port}/{self.dbname}"
        )

    @property
    def dsn(self) -> str:
        """Plain libpq connection URI, as understood by ``psql`` and psycopg."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _missing(binary: str) -> RuntimeError:
    return RuntimeError(f"required server binary {binary!r} was not found; {INSTALL_HINT}")


def _read_log(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return text[-limit:] if text else "<empty log>"


def _clean_env() -> dict[str, str]:
    """The current environment without libpq's PG* variables, which could redirect clients."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc``, killing it if it does not exit promptly."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def _is_root() -> bool:
    return os.geteuid() == 0


def pg_user_prefix() -> list[str]:
    """Command prefix running a PostgreSQL binary as the ``postgres`` user when we are root."""
    if not _is_root():
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise _missing("runuser")
    return [runuser, "-u", PG_SYSTEM_USER, "--"]


def _traversable_by_others(path: Path) -> bool:
    """Whether every directory from ``/`` down to ``path`` can be entered by any user."""
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in (path, *path.parents))


def _make_tempdir(prefix: str, *, shared: bool) -> Path:
    """Create a private temp dir; with ``shared``, under a base the postgres user can reach."""
    base = Path(tempfile.gettempdir()).resolve()
    if shared and not _traversable_by_others(base):
        base = Path("/tmp")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


# --------------------------------------------------------------------------- redis


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _launch_redis(
    binary: str, tmp: Path, port: int, persistent: bool, extra: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start redis-server on `port` (with `extra` arguments) and wait until it answers PING."""
    log_path = tmp / "redis.log"
    cmd = [
        binary,
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "yes" if persistent else "no",
        "--appendfsync", "always",
        "--dir", str(tmp),
        "--daemonize", "no",
        *extra,
    ]  # fmt: skip
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    while True:
        if _redis_ping(port):
            return proc
        code = proc.poll()
        if code is not None:
            log_text = _read_log(log_path)
            if _PORT_IN_USE.search(log_text):
                raise _PortTakenError(log_text)
            raise RuntimeError(
                f"redis-server exited with code {code} before answering PING "
                f"on {HOST}:{port}; log:\n{log_text}"
            )
        if time.monotonic() > deadline:
            _stop_process(proc)
            raise RuntimeError(
                f"redis-server did not answer PING on {HOST}:{port} within "
                f"{REDIS_START_TIMEOUT:.0f}s; log:\n{_read_log(log_path)}"
            )
        time.sleep(0.02)


@contextlib.contextmanager
def redis_server(*, persistent: bool = False) -> Iterator[RedisServer]:
    """Run a private ``redis-server`` for the duration of the block.

    Without ``persistent`` nothing is written to disk; with it, an append-only file (fsync
    on every write) keeps the data across `RedisServer.restart`.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise _missing("redis-server")
    tmp = _make_tempdir("flowpbx-redis-", shared=False)
    server: RedisServer | None = None
    try:
        for attempt in range(PORT_ATTEMPTS):
            port = _free_port()
            try:
                proc = _launch_redis(binary, tmp, port, persistent)
                break
            except _PortTakenError as exc:
                if attempt == PORT_ATTEMPTS - 1:
                    raise RuntimeError(f"redis-server could not bind a free port:\n{exc}") from exc
        else:  # pragma: no cover - the loop either breaks or raises
            raise AssertionError("unreachable")
        server = RedisServer(HOST, port, tmp, persistent, binary, proc)
        yield server
    finally:
        if server is not None:
            if server.process is not None:
                with contextlib.suppress(OSError):
                    server.process.send_signal(signal.SIGCONT)
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- redis cluster

CLUSTER_MASTERS = 3
CLUSTER_START_TIMEOUT = 30.0
REDIS_CLI_HINT = (
    "required binary 'redis-cli' was not found; it is in Debian's redis-tools package (which "
    "redis-server depends on): run scripts/install-servers, or apt-get install redis-tools"
)


@dataclass
class RedisClusterServer:
    """A running Redis Cluster: `masters` masters (`CLUSTER_MASTERS` by default), each with
    `replicas` replicas (none by default), every slot assigned.

    ``ports`` (and ``processes``, in the same order) are every node's; ``url`` is the
    ``redis+cluster://`` form flowpbx's ``connect`` takes; ``nodes_setting`` the
    REDIS_CLUSTER_NODES value for the same nodes.
    """

    host: str
    ports: tuple[int, ...]
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    masters: int = CLUSTER_MASTERS

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        """Every node as (host, port)."""
        return tuple((self.host, port) for port in self.ports)

    @property
    def nodes_setting(self) -> str:
        """REDIS_CLUSTER_NODES for this cluster: ``host:port,host:port,...``."""
        return ",".join(f"{host}:{port}" for host, port in self.nodes)

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.nodes_setting}"

    def flush(self) -> None:
        """Empty every master (what FLUSHDB does to one Redis; replicas follow them)."""
        for port in self.ports:
            reply = redis_command(port, "FLUSHALL")
            if not reply.startswith((b"+OK", b"-READONLY")):
                raise RuntimeError(f"FLUSHALL on {HOST}:{port} answered {reply!r}")

    def stop(self) -> None:
        """Stop every node."""
        for proc in self.processes:
            _stop_process(proc)
        self.processes.clear()


def redis_command(port: int, *args: str) -> bytes:
    """Send one command to the Redis on `port` of 127.0.0.1 and return its raw reply: the
    status, error or integer line, or a bulk string's bytes."""
    request = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        request.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with (
        socket.create_connection((HOST, port), timeout=5.0) as sock,
        sock.makefile("rb") as reader,
    ):
        sock.sendall(b"".join(request))
        line = reader.readline()
        if line.startswith(b"$") and int(line[1:]) >= 0:
            return reader.read(int(line[1:]) + 2)[:-2]
        return line


def _cluster_info(port: int) -> dict[str, str]:
    try:
        text = redis_command(port, "CLUSTER", "INFO").decode(errors="replace")
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _replica_synced(port: int) -> bool:
    """True for a master, and for a replica whose link to its master is up."""
    text = redis_command(port, "INFO", "replication").decode(errors="replace")
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return info.get("role") == "master" or info.get("master_link_status") == "up"


def _launch_cluster_node(
    binary: str, workdir: Path, node_timeout_ms: int
) -> tuple[subprocess.Popen[bytes], int]:
    """One redis-server in cluster mode, its bus on a second free port (port + 10000 may be
    beyond 65535 for an ephemeral port)."""
    for attempt in range(PORT_ATTEMPTS):
        port = _free_port()
        bus = _free_port()
        if bus == port:
            continue
        extra = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(workdir / "nodes.conf"),
            "--cluster-port", str(bus),
            "--cluster-node-timeout", str(node_timeout_ms),
            "--repl-diskless-sync-delay", "0",  # a replica syncs at once, not after 5 s
        ]  # fmt: skip
        try:
            return _launch_redis(binary, workdir, port, False, extra), port
        except _PortTakenError as exc:
            if attempt == PORT_ATTEMPTS - 1:
                raise RuntimeError(f"redis-server could not bind a free port:\n{exc}") from exc
    raise RuntimeError("redis-server: no two distinct free ports were found")


def _create_cluster(cli: str, cluster: RedisClusterServer, replicas: int) -> None:
    """`redis-cli --cluster create` over the nodes, then wait until every node says
    cluster_state:ok and knows every other."""
    result = subprocess.run(
        [cli, "--cluster", "create", *(f"{h}:{p}" for h, p in cluster.nodes),
         "--cluster-replicas", str(replicas), "--cluster-yes"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=CLUSTER_START_TIMEOUT,
        check=False,
    )  # fmt: skip
    output = result.stdout.decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(
            f"redis-cli --cluster create failed with code {result.returncode}:\n{output}"
        )
    expected = {
        "cluster_state": "ok",
        "cluster_slots_assigned": "16384",
        "cluster_known_nodes": str(len(cluster.ports)),
        "cluster_size": str(cluster.masters),
    }
    deadline = time.monotonic() + CLUSTER_START_TIMEOUT
    while True:
        infos = {port: _cluster_info(port) for port in cluster.ports}
        if all(
            all(info.get(name) == value for name, value in expected.items())
            for info in infos.values()
        ) and all(_replica_synced(port) for port in cluster.ports):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the Redis Cluster on ports {cluster.ports} is not ready after "
                f"{CLUSTER_START_TIMEOUT:.0f}s (expected {expected} on every node); "
                f"CLUSTER INFO: {infos}; redis-cli said:\n{output}"
            )
        time.sleep(0.02)


@contextlib.contextmanager
def redis_cluster(
    masters: int = CLUSTER_MASTERS, replicas: int = 0, node_timeout_ms: int = 5000
) -> Iterator[RedisClusterServer]:
    """Run a private Redis Cluster of `masters` masters, each with `replicas` replicas
    (nothing on disk but each node's nodes.conf), for the duration of the block, made by
    ``redis-cli --cluster create`` from Debian's binaries. A master unreachable for
    `node_timeout_ms` is failed over to its replica."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise _missing("redis-server")
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError(REDIS_CLI_HINT)
    tmp = _make_tempdir("flowpbx-redis-cluster-", shared=False)
    cluster = RedisClusterServer(HOST, (), tmp, masters=masters)
    try:
        ports: list[int] = []
        for number in range(masters * (1 + replicas)):
            node_dir = tmp / f"node{number}"
            node_dir.mkdir()
            proc, port = _launch_cluster_node(binary, node_dir, node_timeout_ms)
            cluster.processes.append(proc)
            ports.append(port)
        cluster.ports = tuple(ports)
        _create_cluster(cli, cluster, replicas)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- postgres


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin -> numeric version for sorting
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def find_postgres_bin_dir() -> Path:
    """Directory holding the PostgreSQL server binaries: newest Debian version, else PATH."""
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    if candidates:
        return max(candidates, key=_version_key)
    initdb = shutil.which("initdb")
    if initdb is None:
        raise _missing("initdb")
    return Path(initdb).resolve().parent


def _pg_binary(bin_dir: Path, name: str) -> str:
    path = bin_dir / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise _missing(name)
    return found


def _run_pg(
    cmd: Sequence[str], what: str, *, env: Mapping[str, str], timeout: float = 60.0
) -> None:
    result = subprocess.run(
        [*pg_user_prefix(), *cmd],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        output = result.stdout.decode(errors="replace")
        raise RuntimeError(f"{what} failed with code {result.returncode}:\n{output}")


def _pg_ready(pg_isready: str, port: int, user: str, env: Mapping[str, str]) -> bool:
    result = subprocess.run(
        [pg_isready, "-q", "-h", HOST, "-p", str(port), "-U", user, "-d", "postgres", "-t", "1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(env),
        check=False,
    )
    return result.returncode == 0


def _start_postgres(
    bin_dir: Path,
    tmp: Path,
    data_dir: Path,
    user: str,
    env: Mapping[str, str],
    *,
    port: int | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    port = port or _free_port()
    log_path = tmp / f"postgres-{port}.log"
    cmd = [
        *pg_user_prefix(),
        _pg_binary(bin_dir, "postgres"),
        "-D", str(data_dir),
        "-p", str(port),
        "-k", str(tmp),
        "-c", f"listen_addresses={HOST}",
        "-c", "fsync=off",
        "-c", "synchronous_commit=off",
        "-c", "full_page_writes=off",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    pg_isready = _pg_binary(bin_dir, "pg_isready")
    deadline = time.monotonic() + POSTGRES_START_TIMEOUT
    while True:
        if _pg_ready(pg_isready, port, user, env):
            return proc, port
        code = proc.poll()
        if code is not None:
            log_text = _read_log(log_path)
            if _PORT_IN_USE.search(log_text):
                raise _PortTakenError(log_text)
            raise RuntimeError(
                f"postgres exited with code {code} before accepting connections "
                f"on {HOST}:{port}; log:\n{log_text}"
            )
        if time.monotonic() > deadline:
            _stop_process(proc)
            raise RuntimeError(
                f"postgres did not accept connections on {HOST}:{port} within "
                f"{POSTGRES_START_TIMEOUT:.0f}s; log:\n{_read_log(log_path)}"
            )
        time.sleep(0.05)


def _stop_postgres(
    bin_dir: Path,
    data_dir: Path,
    proc: subprocess.Popen[bytes],
    env: Mapping[str, str],
    mode: str = "immediate",
) -> None:
    if proc.poll() is None:
        with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
            _run_pg(
                [_pg_binary(bin_dir, "pg_ctl"), "stop", "-D", str(data_dir), "-m", mode,
                 "-w", "-t", str(int(STOP_TIMEOUT))],
                "pg_ctl stop",
                env=env,
                timeout=STOP_TIMEOUT + 5,
            )  # fmt: skip
    _stop_process(proc)


@contextlib.contextmanager
def postgres_server(
    *, user: str = "flowpbx", dbname: str = "flowpbx_test"
) -> Iterator[PostgresServer]:
    """Run a private PostgreSQL cluster holding database ``dbname`` owned by ``user``.

    TCP connections need the generated password (scram-sha-256); the Unix socket
    in ``socket_dir`` trusts every local user.
    """
    bin_dir = find_postgres_bin_dir()
    initdb = _pg_binary(bin_dir, "initdb")
    for name in ("postgres", "pg_ctl", "pg_isready", "createdb"):
        _pg_binary(bin_dir, name)  # fail fast and clearly on a partial install

    owner: pwd.struct_passwd | None = None
    if _is_root():
        try:
            owner = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise RuntimeError(
                f"running as root, but the {PG_SYSTEM_USER!r} system user needed to run "
                f"PostgreSQL does not exist; {INSTALL_HINT}"
            ) from None
        pg_user_prefix()  # check runuser exists before creating anything

    env = _clean_env()
    env["LC_ALL"] = "C"
    password = secrets.token_hex(12)
    tmp = _make_tempdir("flowpbx-pg-", shared=owner is not None)
    data_dir = tmp / "data"
    proc: subprocess.Popen[bytes] | None = None
    process: _PgProcess | None = None
    try:
        pwfile = tmp / "pwfile"
        pwfile.write_text(password + "\n")
        if owner is not None:
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        _run_pg(
            [
                initdb,
                "-D", str(data_dir),
                "-U", user,
                "--pwfile", str(pwfile),
                "--auth-local", "trust",
                "--auth-host", "scram-sha-256",
                "-E", "UTF8",
                "--locale", "C",
                "--no-sync",
                "--no-instructions",
            ],
            "initdb",
            env=env,
        )  # fmt: skip
        pwfile.unlink()

        for attempt in range(PORT_ATTEMPTS):
            try:
                proc, port = _start_postgres(bin_dir, tmp, data_dir, user, env)
                break
            except _PortTakenError as exc:
                if attempt == PORT_ATTEMPTS - 1:
                    raise RuntimeError(f"postgres could not bind a free port:\n{exc}") from exc
        else:  # pragma: no cover - the loop either breaks or raises
            raise AssertionError("unreachable")

        _run_pg(
            [_pg_binary(bin_dir, "createdb"), "-h", str(tmp), "-p", str(port), "-U", user,
             "-O", user, dbname],
            "createdb",
            env=env,
        )  # fmt: skip
        process = _PgProcess(proc, data_dir, env)
        yield PostgresServer(
            host=HOST,
            port=port,
            user=user,
            password=password,
            dbname=dbname,
            bin_dir=bin_dir,
            socket_dir=tmp,
            process=process,
        )
    finally:
        current = process.proc if process is not None else proc
        if current is not None:
            _stop_postgres(bin_dir, data_dir, current, env)
        shutil.rmtree(tmp, ignore_errors=True)
