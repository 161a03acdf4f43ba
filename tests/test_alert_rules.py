"""The alert rules of docs/operations.md (section 5): well-formed, accepted by Prometheus's own
`promtool check rules`, made only of metrics /metrics really has, and firing when they should
(`promtool test rules` on series like those flowpbx exposes)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import FLOWS, ROOT
from flowpbx.app import build_app
from flowpbx.settings import Settings
from twilio_fake import BASE_URL, TestClient

DOCS = ROOT / "docs" / "operations.md"
SEVERITIES = frozenset({"page", "warning"})
_DURATION = re.compile(r"^[0-9]+[smhd]$")
_METRIC = re.compile(r"\bflowpbx_[a-z0-9_]+")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def rules_text() -> str:
    """The YAML block of the alert rules section."""
    section = DOCS.read_text(encoding="utf-8").split("## 5. Alert rules", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, f"expected one yaml block in section 5 of {DOCS}"
    return str(blocks[0])


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(rules_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        raise RuntimeError("promtool was not found; run scripts/install-servers to install it")
    return found


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "flowpbx.rules.yml"
    path.write_text(rules_text(), encoding="utf-8")
    return path


def test_rules_are_well_formed() -> None:
    """One group of uniquely named alerts, each with an expression, a duration, a severity,
    a summary and a description (what it means, what to look at)."""
    document = yaml.safe_load(rules_text())
    assert set(document) == {"groups"}
    (group,) = document["groups"]
    assert group["name"] == "flowpbx"
    names = [rule["alert"] for rule in group["rules"]]
    assert len(names) == len(set(names)), names
    for rule in group["rules"]:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Flowpbx[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
        assert isinstance(rule["expr"], str), rule
        assert rule["expr"].strip(), rule
        assert _DURATION.match(rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in SEVERITIES, rule
        assert rule["annotations"]["summary"], rule
        assert rule["annotations"]["description"], rule


def test_promtool_accepts_the_rules(rules_file: Path) -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.fixture
def exposed(tmp_path: Path) -> set[str]:
    """The metric families of a running flowpbx's /metrics (queues, history, REST API)."""
    settings = Settings(
        twilio_auth_token="rules-token",
        flows_dir=FLOWS,
        database_url_override=f"sqlite:///{tmp_path / 'rules.sqlite3'}",
        queue_scheduler=False,
    )
    with TestClient(build_app(settings), base_url=BASE_URL) as client:
        text = client.get("/metrics").text
    return {family.name for family in text_string_to_metric_families(text)}


def test_every_metric_the_rules_use_is_exposed(exposed: set[str]) -> None:
    used = {name for rule in rules() for name in _METRIC.findall(rule["expr"])}
    assert used, "the rules use no flowpbx metric"
    for name in sorted(used):
        family = next((name.removesuffix(s) for s in _SUFFIXES if name.endswith(s)), name)
        assert family in exposed, f"{name}: no family {family} in /metrics"


_TESTS = """
rule_files: [RULES]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Two instances report the same shared state: the rules must not add them up.
      - series: 'flowpbx_queue_callers{instance="a", queue="general-queue"}'
        values: '0 2x10'
      - series: 'flowpbx_queue_callers{instance="b", queue="general-queue"}'
        values: '0 2x10'
      - series: 'flowpbx_queue_agents{instance="a", queue="general-queue", status="offline"}'
        values: '1x10'
      - series: 'flowpbx_queue_agents{instance="a", queue="general-queue", status="available"}'
        values: '0x10'
      - series: 'flowpbx_queue_callers{instance="a", queue="ventas"}'
        values: '3x10'
      - series: 'flowpbx_queue_agents{instance="a", queue="ventas", status="busy"}'
        values: '1x10'
      - series: 'flowpbx_ready{instance="a", check="redis"}'
        values: '1 1 0x8'
      - series: 'flowpbx_ready{instance="a", check="database"}'
        values: '1x10'
      # 100 steps a minute, 10 fallbacks: about 9 % of the flow's webhooks fall back...
      - series: 'flowpbx_steps_total{instance="a", flow="seguros", kind="menu"}'
        values: '0+100x10'
      - series: 'flowpbx_fallbacks_total{instance="a", flow="seguros", reason="store_unavailable"}'
        values: '0+10x10'
      - series: >-
          flowpbx_webhook_responses_total{instance="a", route="/api/calls/gather", status="200"}
        values: '0+100x10'
      # ...however many callers on hold poll their wait URL meanwhile.
      - series: >-
          flowpbx_webhook_responses_total{instance="a", route="/api/calls/queue-wait", status="200"}
        values: '0+1000x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: FlowpbxQueueNoAgents
        exp_alerts:
          - exp_labels: {severity: page, queue: general-queue}
      - eval_time: 5m
        alertname: FlowpbxNotReady
        exp_alerts:
          - exp_labels: {severity: page, check: redis}
      - eval_time: 10m
        alertname: FlowpbxFallbacks
        exp_alerts:
          - exp_labels: {severity: warning, flow: seguros, reason: store_unavailable}
      - eval_time: 10m
        alertname: FlowpbxWebhooksRejected
        exp_alerts: []

  # 2.03 % of the steps fail: past the 2 % threshold. A failed step is counted as a step
  # already, and must not be counted again in the denominator (that would read 1.99 %).
  - interval: 1m
    input_series:
      - series: 'flowpbx_steps_total{instance="a", flow="seguros", kind="menu"}'
        values: '0+10000x20'
      - series: 'flowpbx_fallbacks_total{instance="a", flow="seguros", reason="step_failed"}'
        values: '0+203x20'
    alert_rule_test:
      - eval_time: 20m
        alertname: FlowpbxFallbacks
        exp_alerts:
          - exp_labels: {severity: warning, flow: seguros, reason: step_failed}

  # A scanner at night: nothing but a few unsigned requests, all refused (100 % of the
  # webhooks). No alert: too few to mean anything.
  - interval: 1m
    input_series:
      - series: >-
          flowpbx_webhook_responses_total{instance="a", route="/api/calls/incoming", status="403"}
        values: '0+0.5x120'
    alert_rule_test:
      - eval_time: 120m
        alertname: FlowpbxWebhooksRejected
        exp_alerts: []

  # TWILIO_AUTH_TOKEN changed at Twilio and not here: every call is refused. A warning.
  # Malformed requests (400) are not signatures that fail, and are not counted.
  - interval: 1m
    input_series:
      - series: >-
          flowpbx_webhook_responses_total{instance="a", route="/api/calls/incoming", status="403"}
        values: '0+6x30'
      - series: >-
          flowpbx_webhook_responses_total{instance="a", route="/api/calls/incoming", status="200"}
        values: '0+30x10 300x20'
      - series: >-
          flowpbx_webhook_responses_total{instance="b", route="/api/calls/gather", status="400"}
        values: '0+50x30'
    alert_rule_test:
      - eval_time: 8m
        alertname: FlowpbxWebhooksRejected
        exp_alerts: []
      - eval_time: 30m
        alertname: FlowpbxWebhooksRejected
        exp_alerts:
          - exp_labels: {severity: warning}

  # Queues: a busy queue whose longest wait is 400 s (its max_wait is 600) is no trouble; nor
  # is one caller near the limit who then times out. Callers waiting near or past the limit
  # minute after minute are.
  - interval: 1m
    input_series:
      - series: 'flowpbx_queue_longest_wait_seconds{instance="a", queue="general-queue"}'
        values: '400x20'
      - series: 'flowpbx_queue_longest_wait_seconds{instance="a", queue="soporte"}'
        values: '480 570 0x18'
      - series: 'flowpbx_queue_longest_wait_seconds{instance="a", queue="ventas"}'
        values: '500 560 590 560 580 570 590 560 600 620 640 660 580 590 600 610 570 560 590 600'
      - series: 'flowpbx_queue_longest_wait_seconds{instance="b", queue="ventas"}'
        values: '500 560 590 560 580 570 590 560 600 620 640 660 580 590 600 610 570 560 590 600'
    alert_rule_test:
      - eval_time: 15m
        alertname: FlowpbxQueueWaitLong
        exp_alerts:
          - exp_labels: {severity: warning, queue: ventas}
"""


def test_rules_fire_when_they_should(tmp_path: Path) -> None:
    """promtool's rule unit tests (on the rules without their annotations, which promtool
    would compare word for word): callers waiting in a queue whose every agent is offline page
    (a queue with a busy agent does not); a failing readiness check pages with its name; one
    fallback per ten steps of a flow warns, however many queue-wait polls come meanwhile;
    nothing is refused, so no rejection alert; a scanner's few 403s at night do not warn, a
    wrong auth token's do; a queue's longest wait warns only when it stays near the queues'
    max_wait, not at 400 s nor for one caller who times out."""
    document = yaml.safe_load(rules_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(document), encoding="utf-8")
    tests = tmp_path / "rules.test.yml"
    tests.write_text(_TESTS.replace("RULES", "rules.yml"), encoding="utf-8")
    result = subprocess.run(
        [promtool(), "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
