"""The table maintenance benchmark as a smoke test: a short run without and with the
maintenance job writes well-formed results. It asserts what the results hold, never how fast
anything was, nor how much maintenance saved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
BRONZE = "bronze.shop_orders"


@pytest.mark.timeout(1500)
def test_a_short_maintenance_benchmark_writes_both_runs(tmp_path: Path) -> None:
    out = tmp_path / "results"
    # Half a minute each way, one maintenance tick half-way (bronze has taken batches by
    # then), on one table, so the job's own run stays short; the query and the streams are the
    # benchmark's own.
    command = [
        *(sys.executable, "-m", "bench.maintenance_run"),
        *("--minutes", "0.5", "--every", "0.25", "--sample", "10", "--rate", "50"),
        *("--table", BRONZE, "--out", str(out)),
    ]
    bench = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        _, stderr = bench.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        bench.terminate()  # it stops its broker and drivers on SIGTERM
        _, stderr = bench.communicate(timeout=180)
        pytest.fail(f"the benchmark did not end in 20 minutes:\n{stderr[-3000:]}")
    assert bench.returncode == 0, stderr[-3000:]
    assert "without t=" in stderr and "with: maintenance run" in stderr

    latest = json.loads((out / "maintenance-latest.json").read_text())
    [dated] = [p for p in out.glob("maintenance-2*.json")]
    assert json.loads(dated.read_text()) == latest
    assert set(latest["runs"]) == {"without", "with"}
    for label, run in latest["runs"].items():
        samples = run["samples"]
        assert len(samples) >= 2, label
        assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples), label
        assert samples[-1]["t_s"] >= 30, label
        last = samples[-1]["files"][BRONZE]
        assert last["live"] > 0 and last["on_disk"] >= last["live"] and last["log"] > 0, label
        timed = [s for s in samples if s["query_s"] is not None]
        assert timed and all(s["query_s"] > 0 and len(s["query_runs_s"]) == 3 for s in timed)
        assert run["records_sent"]["shop"] > 0 and run["records_sent"]["customers"] > 0
    assert latest["runs"]["without"]["maintenance_runs"] == []

    # With: once before the streams start, then at least once while they ran; each run's
    # record of the table agrees with the table's Delta history.
    runs = latest["runs"]["with"]["maintenance_runs"]
    assert not runs[0]["streams_running"] and any(m["streams_running"] for m in runs)
    assert all(m["exit_code"] == 0 for m in runs)
    did = latest["summary"]["maintenance"][BRONZE]
    assert did["runs"] == len(runs) and not did["errors"] and not did["skipped"]
    assert did["files_compacted"] > did["files_written"] > 0, "bronze was compacted"
    history = did["history_at_end"]
    assert history["OPTIMIZE"] == did["optimized"] >= 1
    assert history["VACUUM END"] == len(runs)
    assert history["SET TBLPROPERTIES"] == 1, "retention set while the streams were stopped"

    summary = latest["summary"]
    for kind in ("live", "on_disk", "log"):
        assert all(summary["totals_at_end"][kind][label] > 0 for label in ("without", "with"))
    for label in ("without", "with"):
        assert summary["query_s"][label]["first"] > 0 and summary["query_s"][label]["last"] > 0
    table = (out / "maintenance-latest.md").read_text()
    assert f"| {BRONZE} |" in table and "| with |" in table and "| without |" in table
    assert (out / "maintenance-latest.png").read_bytes().startswith(PNG)
