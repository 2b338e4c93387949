"""`headwater bench --quick` as a smoke test: the harness runs every side for real and writes
well-formed results. It asserts what the results hold, never how fast anything was."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import LAYERS

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "devstack.cli", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "limit:" in done.stderr and "chain:" in done.stderr, "the progress display"

    latest = json.loads((out / "latest.json").read_text())
    dated = [p for p in out.glob("*.json") if p.name != "latest.json"]
    assert len(dated) == 1 and json.loads(dated[0].read_text()) == latest
    for ratio in ("bronze_vs_baseline", "chain_vs_baseline", "baseline_vs_limit"):
        assert isinstance(latest[ratio], float) and latest[ratio] > 0, ratio
    assert set(latest["freshness_p99_s"]) == set(LAYERS)
    assert all(v > 0 for v in latest["freshness_p99_s"].values())
    assert latest["machine"]["cores"] and latest["machine"]["pyspark"]
    assert latest["limit"]["records"] == latest["plan"]["backlog"]

    for side in ("baseline", "bronze", "chain"):
        figures = latest["sides"][side]
        assert figures["throughput_rps"] > 0 and figures["cpu_s_per_million"] > 0
        assert figures["driver_peak_rss_mib"] > 0
        assert figures["fixed_rate_records"] > 0 and figures["kept_up"] is True
        for layer, fresh in figures["freshness_s"].items():
            # Every record sent during the fixed-rate phase was measured, in every layer.
            assert fresh["rows"] == figures["fixed_rate_records"], (side, layer)
            assert 0 < fresh["p50"] <= fresh["p95"] <= fresh["p99"], (side, layer)
            assert len(fresh["cdf"]) == 101 and not any(math.isnan(v) for v in fresh["cdf"])
        assert all(n > 0 for n in figures["files_at_end"].values())
        assert figures["batch_ms_at_fixed_rate"], side
        # Every query polled its source while idle, and Spark timed it.
        idle = figures["batch_ms_at_idle"]
        assert idle, side
        assert all({"triggerExecution", "latestOffset"} <= set(p) for p in idle.values()), side
        assert figures["throughput_over_time"], side
    assert set(latest["sides"]["chain"]["freshness_s"]) == set(LAYERS)

    table = (out / "latest.md").read_text()
    for row in (
        "| limit",
        "| baseline |",
        "| bronze |",
        "| chain |",
        "full chain / baseline",
        "| idle |",
    ):
        assert row in table
    for plot in ("latest-freshness.png", "latest-throughput.png"):
        assert (out / plot).read_bytes().startswith(PNG), plot
