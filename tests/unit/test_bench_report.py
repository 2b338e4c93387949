"""The benchmark's verdict and files from a run's figures (the growth part, which only a full
run measures, included), and the freshness percentiles it reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.measure import lag_grew, percentile

pytestmark = pytest.mark.unit


def side(rate: float, layers: dict[str, float]) -> dict[str, Any]:
    return {
        "throughput_rps": rate,
        "cpu_s_per_million": 900.0,
        "driver_peak_rss_mib": 1000.0,
        "kept_up": True,
        "freshness_s": {
            layer: {"p50": p99 / 2, "p95": p99 * 0.9, "p99": p99, "rows": 10, "cdf": [p99] * 101}
            for layer, p99 in layers.items()
        },
        "files_at_end": {"t": 3},
        "throughput_over_time": [[0.0, 10], [1.0, 10]],
        "batch_ms_at_fixed_rate": {"q": {"triggerExecution": 900.0, "addBatch": 700.0}},
        "batch_ms_at_idle": {"q": {"triggerExecution": 12.0, "latestOffset": 9.0}},
    }


def results() -> dict[str, Any]:
    return {
        "started": "2026-12-01T18:00:00+00:00",
        "mode": "full",
        "plan": {"backlog": 100, "rate": 50, "seconds": 10, "partitions": 3, "batches": 10},
        "machine": {"commit": "abc", "cores": 2, "memory_gib": 24, "cpu": "x", "pyspark": "4.2.0"}
        | {"delta_spark": "4.4.0"},
        "limit": {"throughput_rps": 40000.0, "records": 100},
        "sides": {
            "baseline": side(10000.0, {"baseline": 3.0}),
            "bronze": side(9000.0, {"bronze": 2.5}),
            "chain": side(4000.0, {"bronze": 3.0, "silver": 9.0, "gold": 14.0}),
            "floor": side(8000.0, {"bronze": 2.0, "silver": 4.0, "gold": 8.0}),
        },
        "growth": {
            "throughput_by_partitions": [
                {"partitions": p, "baseline": 1000.0 * p, "bronze": 900.0 * p} for p in (1, 2)
            ],
            "freshness_by_rate": [
                {
                    "rate": r,
                    "kept_up": r < 100,
                    "freshness_s": {
                        layer: {"p50": 1.0, "p95": 2.0, "p99": 3.0} for layer in report.LAYERS
                    },
                }
                for r in (50, 100)
            ],
        },
    }


def test_verdict_is_ratios_and_p99_per_layer() -> None:
    verdict = report.verdict(results())
    assert verdict["bronze_vs_baseline"] == 0.9
    assert verdict["chain_vs_baseline"] == 0.4
    assert verdict["baseline_vs_limit"] == 0.25
    assert verdict["freshness_p99_s"] == {"bronze": 2.5, "silver": 9.0, "gold": 14.0}
    assert verdict["fixed_rate_below_baseline"] is True
    # The floor (Spark and Delta alone, three hops) against the baseline and the chain.
    assert verdict["floor_vs_baseline"] == 0.8
    assert verdict["chain_vs_floor"] == 0.5
    assert verdict["floor_freshness_p99_s"] == {"bronze": 2.0, "silver": 4.0, "gold": 8.0}


def test_verdict_without_a_floor_leaves_its_figures_empty() -> None:
    figures = results()
    del figures["sides"]["floor"]
    verdict = report.verdict(figures)
    assert verdict["floor_vs_baseline"] is None and verdict["chain_vs_floor"] is None
    assert set(verdict["floor_freshness_p99_s"].values()) == {None}
    figures.update(verdict)
    assert "floor" not in report.markdown(figures)


def test_results_files_hold_the_figures(tmp_path: Path) -> None:
    figures = results()
    figures.update(report.verdict(figures))
    written = report.write(figures, tmp_path, datetime(2026, 12, 1, 18, tzinfo=UTC))
    names = {p.name for p in written}
    assert {"20261201T180000Z.json", "latest.json", "latest.md"} <= names
    assert {"latest-freshness.png", "latest-throughput.png", "latest-growth.png"} <= names
    assert json.loads((tmp_path / "latest.json").read_text())["chain_vs_baseline"] == 0.4
    table = (tmp_path / "latest.md").read_text()
    assert "| chain | 4000 | bronze 1.50 / 2.70 / 3.00; silver 4.50" in table
    assert "| floor / baseline throughput | 0.8 |" in table
    assert "| full chain / floor throughput | 0.5 |" in table
    assert "| floor freshness p99 bronze / silver / gold (s) | 2.0 / 4.0 / 8.0 |" in table
    assert "| 2 | 2000 | 1800 |" in table  # throughput by partitions
    assert "| 100 | 3.00 / 3.00 / 3.00 | no |" in table  # past the knee
    assert "| chain: q | fixed rate | 900 |  |  | 700 |  |" in table  # a batch's parts
    assert "| chain: q | idle | 12 | 9 |  |  |  |" in table  # a trigger without input


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([7], 99) == 7


def test_lag_grew_tells_a_bounded_lag_from_a_growing_one() -> None:
    steady = [(t * 10, 1500 + (t % 7) * 100) for t in range(400)]  # ~1.5-2.1 s throughout
    growing = [(t * 10, 1500 + t * 50) for t in range(400)]  # 1.5 s, then 21.5 s
    assert not lag_grew(steady)
    assert lag_grew(growing)
    assert not lag_grew(growing[:5]), "too few rows to tell"
