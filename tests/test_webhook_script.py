"""scripts/webhook against a real `flowpbx serve`: the reply's status line on standard error,
its body on standard output, and a non-zero exit status when flowpbx refuses the request (HTTP
400 or more) or does not answer; and the README's "Walk the menu with signed webhooks", run as
written."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conftest import ROOT
from serve_process import TOKEN, Server, environment, free_port, serving, workdir
from twilio_fake import call_sid

SCRIPT = ROOT / "scripts" / "webhook"
README = ROOT / "README.md"
CALLER = "+34600111222"
CALLED = "+34912345678"
STATUS_LINE = re.compile(r"HTTP/[\d.]+ \d{3}\b[^\n(]*")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One flowpbx, its office open (the README's walk reaches the menu at any hour)."""
    env = environment(TWILIO_AUTH_TOKEN=TOKEN, FLOWPBX_HOURS_OVERRIDE="open")
    with serving(workdir(tmp_path_factory.mktemp("webhook")), env) as running:
        yield running


def webhook(
    url: str, *args: str, token: str = TOKEN, shell: str | None = None
) -> subprocess.CompletedProcess[str]:
    """scripts/webhook ARGS (or the bash line `shell`) with FLOWPBX_URL and the token set, as
    a person runs it from the repository's root."""
    env = environment(FLOWPBX_URL=url, TWILIO_AUTH_TOKEN=token)
    command = ["bash", "-c", shell] if shell is not None else [str(SCRIPT), *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def shown(result: subprocess.CompletedProcess[str]) -> str:
    output = f"stdout: {result.stdout}\nstderr: {result.stderr}"
    return f"{result.args}\n(exit {result.returncode})\n{output}"


def test_an_accepted_webhook_prints_its_status_line_apart_from_the_twiml(server: Server) -> None:
    sid = call_sid(0x5C1)
    result = webhook(
        server.base_url, "/api/calls/incoming", f"CallSid={sid}", f"From={CALLER}", f"To={CALLED}"
    )
    assert result.returncode == 0, shown(result)
    assert result.stderr == "HTTP/1.1 200 OK\n", shown(result)
    assert result.stdout.startswith("<?xml"), shown(result)
    assert result.stdout.rstrip().endswith("</Response>"), shown(result)


def test_a_reply_without_a_body_shows_its_status_line_only(server: Server) -> None:
    sid = call_sid(0x5C2)
    status = ("/api/webhooks/call-status", f"CallSid={sid}", "CallStatus=completed")
    result = webhook(server.base_url, *status, f"From={CALLER}", f"To={CALLED}")
    assert result.returncode == 0, shown(result)
    assert result.stderr == "HTTP/1.1 204 No Content\n", shown(result)
    assert result.stdout == "", shown(result)


def test_a_refused_webhook_exits_non_zero_and_shows_why(server: Server) -> None:
    """A signature made with another token: 403, the JSON error on standard output, exit 1."""
    sid = call_sid(0x5C3)
    result = webhook(server.base_url, "/api/calls/incoming", f"CallSid={sid}", token="not-it")
    assert result.returncode == 1, shown(result)
    assert result.stderr == "HTTP/1.1 403 Forbidden\n", shown(result)
    assert '"error":"invalid_signature"' in result.stdout, shown(result)


def test_an_unknown_path_exits_non_zero(server: Server) -> None:
    result = webhook(server.base_url, "/api/calls/nowhere", "CallSid=" + call_sid(0x5C4))
    assert result.returncode == 1, shown(result)
    assert result.stderr.startswith("HTTP/1.1 404 "), shown(result)


def test_no_server_exits_non_zero_and_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = webhook(url, "/api/calls/incoming", "CallSid=" + call_sid(0x5C5))
    assert result.returncode == 3, shown(result)
    assert f"no answer from {url}/api/calls/incoming" in result.stderr, shown(result)
    assert result.stdout == "", shown(result)


def test_a_mistyped_address_is_no_answer_not_a_refusal() -> None:
    """curl's own failures (here 1: an unknown protocol) are not confused with the script's 1
    (HTTP 400 or more) or 2 (usage): nothing answered, 3."""
    url = "htp://127.0.0.1:3020"
    result = webhook(url, "/api/calls/incoming", "CallSid=" + call_sid(0x5C6))
    assert result.returncode == 3, shown(result)
    assert "curl exit status 1" in result.stderr, shown(result)


def test_help_and_usage() -> None:
    helped = webhook("http://127.0.0.1:9", "--help")
    assert helped.returncode == 0, shown(helped)
    assert helped.stdout.startswith("usage: scripts/webhook PATH"), shown(helped)
    for args in ((), ("api/calls/incoming",)):
        wrong = webhook("http://127.0.0.1:9", *args)
        assert wrong.returncode == 2, shown(wrong)
        assert "usage: scripts/webhook PATH" in wrong.stderr, shown(wrong)


@dataclass(frozen=True)
class Step:
    """A command of the README's walk and the comment lines shown after it."""

    command: str
    shows: tuple[str, ...]


def readme_walk() -> list[Step]:
    """The bash block under "Walk the menu with signed webhooks": its commands (continued lines
    joined) and the `#  ...` lines after each, which show what it prints."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Walk the menu with signed webhooks", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    steps: list[Step] = []
    pending = ""
    for line in block.splitlines():
        if line.startswith("#"):
            assert steps, f"a comment before any command: {line!r}"
            steps[-1] = Step(steps[-1].command, (*steps[-1].shows, line.lstrip("# ")))
        elif line.endswith("\\"):
            pending += line[:-1]
        elif line.strip():
            steps.append(Step(pending + line, ()))
            pending = ""
    assert not pending, "the walk ends inside a continued line"
    return steps


def test_the_readme_walk_runs_as_written(server: Server) -> None:
    """Every command of the README's walk, in order, through bash: each exits 0; each tag and
    `seq` its comment shows is in the TwiML on standard output; a status line it shows is the
    one on standard error."""
    steps = readme_walk()
    assert steps[0].command.startswith("CALL="), steps[0]
    webhooks = steps[1:]
    assert len(webhooks) >= 6, webhooks
    call = f"CALL={call_sid(0x5CA11)}; "
    for step in webhooks:
        assert step.command.startswith("scripts/webhook "), step.command
        result = webhook(server.base_url, shell=call + step.command)
        assert result.returncode == 0, shown(result)
        [status] = result.stderr.splitlines()
        for shown_line in step.shows:
            for tag in re.findall(r"<(\w+)", shown_line):
                assert f"<{tag}" in result.stdout, f"the README shows <{tag}:\n{shown(result)}"
            for seq in re.findall(r"\?seq=\d+", shown_line):
                assert seq in result.stdout, f"the README shows {seq}:\n{shown(result)}"
            line = STATUS_LINE.match(shown_line)
            if line:
                assert status == line[0].strip(), shown(result)
                assert result.stdout == "", shown(result)
    last = webhooks[-1].shows
    assert any(STATUS_LINE.match(line) for line in last), f"no status line shown: {last}"
