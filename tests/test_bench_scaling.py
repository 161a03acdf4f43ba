"""benchmarks/bench_scaling.py cannot rot: its smoke run (--quick) starts `flowpbx serve
--workers 1` and `--workers 2` on one Redis, drives both with the load generator, and every
request is answered right by both workers of the second."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_the_scaling_benchmark_runs_and_both_workers_answer(tmp_path: Path) -> None:
    output = tmp_path / "scaling.json"
    script = ROOT / "benchmarks" / "bench_scaling.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(output.read_text())
    rows = result["summary"]["rows"]
    assert [rows[n]["workers"] for n in ("1", "2")] == [1, 2]
    for row in rows.values():
        assert row["requests"] > 100
        assert row["failures"] == 0
    assert [len(pids) for pids in result["workers_seen"].values()] == [1, 2]
    # Both workers of the second server took connections and answered webhooks.
    assert all(share > 0.01 for share in rows["2"]["worker_cpu_each"])
    assert result["summary"]["throughput_ratio"] > 0
    assert "| `--workers 2` |" in done.stdout
