"""The maintenance benchmark's summary and files from a run's samples: files at the end per
table, the gold query's median in the first and last quarter, what maintenance did."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench import maintenance_run

pytestmark = pytest.mark.unit
BRONZE = "bronze.shop_orders"
ORDERS = "bronze.maintab12with_shop_orders"  # as the job names the run's table
GOLD = "gold.customer_orders"


def sample(t: float, live: int, query_s: float | None) -> dict[str, Any]:
    return {
        "t_s": t,
        "files": {
            BRONZE: {"live": live, "on_disk": live + 2, "log": 10},
            "gold.customer_orders": {"live": 4, "on_disk": 4, "log": 5},
        },
        "query_s": query_s,
        "query_runs_s": [] if query_s is None else [query_s] * 3,
        "query_rows": 10,
        "maintenance_running": False,
    }


def table_result(table: str, compacted: int, written: int, notes: list[str]) -> dict[str, Any]:
    return {
        "table": table,
        "files_compacted": compacted,
        "files_written": written,
        "files_vacuumed": 0,
        "bytes_vacuumed": 0,
        "skipped": None,
        "notes": notes,
    }


def results() -> dict[str, Any]:
    # 120 s runs sampled every 30 s: the first quarter holds t=0 and t=30 (30 s is its end).
    without = [sample(t, n, q) for t, n, q in ((0, 0, 1.0), (30, 9, 3.0), (60, 18, 2.0))]
    without += [sample(90, 27, 4.0), sample(120, 36, 6.0)]
    with_ = [sample(t, n, q) for t, n, q in ((0, 0, 1.0), (30, 9, None), (60, 1, 2.0))]
    with_ += [sample(90, 10, 2.0), sample(120, 19, 3.0)]
    waited = "OPTIMIZE waits for a run that finds stream gold:x stopped: it reads this table"
    return {
        "started": "2026-12-01T18:00:00+00:00",
        "plan": {
            "minutes": 2,
            "every_minutes": 1,
            "sample_s": 30,
            "rate": 200,
            "cdc_rate": 20,
            "retention_hours": 1,
            "tables": [],
            "seconds": 120,
            "window_s": 30,
        },
        "machine": {"commit": "abc1234", "cores": 2, "memory_gib": 8.0},
        "runs": {
            "without": {
                "prefix": "maintab12without",
                "records_sent": {"shop": 900, "customers": 90},
                "rows_at_last_sample": {BRONZE: 400, "bronze.shop_payments": 380, GOLD: 12},
                "samples": without,
                "maintenance_runs": [],
                "query_failures": [],
                "history_at_end": {BRONZE: {"WRITE": 40}},
            },
            "with": {
                "prefix": "maintab12with",
                "records_sent": {"shop": 800, "customers": 80},
                "rows_at_last_sample": {BRONZE: 400, "bronze.shop_payments": None},
                "samples": with_,
                "maintenance_runs": [
                    {
                        "started_s": -20,
                        "seconds": 20,
                        "streams_running": False,
                        "tables": [table_result(ORDERS, 0, 0, []), table_result(GOLD, 0, 0, [])],
                    },
                    {
                        "started_s": 55,
                        "seconds": 10,
                        "streams_running": True,
                        "tables": [
                            table_result(ORDERS, 12, 1, []),
                            table_result(GOLD, 0, 0, [waited]),
                        ],
                    },
                ],
                "skipped_ticks_s": [],
                "query_failures": ["a file went missing"],
                "history_at_end": {BRONZE: {"WRITE": 40, "OPTIMIZE": 1, "VACUUM END": 2}},
            },
        },
    }


def test_the_summary_compares_the_ends_and_the_first_and_last_quarters() -> None:
    found = maintenance_run.summary(results())

    assert found["files_at_end"][BRONZE]["live"] == {"without": 36, "with": 19}
    assert found["totals_at_end"]["on_disk"] == {"without": 38 + 4, "with": 21 + 4}
    # Medians of the samples at t <= 30 and t >= 90; a sample whose executions all failed
    # counts in neither.
    assert found["query_s"]["without"] == {"first": 2.0, "last": 5.0, "failures": 0}
    assert found["query_s"]["with"] == {"first": 1.0, "last": 2.5, "failures": 1}
    assert found["streams"] == {
        "without": {"records_sent": 990, "in_bronze_at_last_sample": 780},
        "with": {"records_sent": 880, "in_bronze_at_last_sample": 400},
    }
    did = found["maintenance"][BRONZE]
    assert (did["runs"], did["optimized"], did["files_compacted"], did["files_written"]) == (
        2,
        1,
        12,
        1,
    )
    assert did["notes"] == [] and did["history_at_end"] == {"OPTIMIZE": 1, "VACUUM END": 2}
    gold = found["maintenance"][GOLD]
    assert (gold["runs"], gold["optimized"]) == (2, 0)
    assert gold["notes"] == ["OPTIMIZE waited: the table's stream reads what it writes"]


def test_the_files_hold_the_table_and_the_plot(tmp_path: Path) -> None:
    figures = results()
    figures["summary"] = maintenance_run.summary(figures)

    written = maintenance_run.write(figures, tmp_path, datetime(2026, 12, 1, 18, tzinfo=UTC))

    assert [p.name for p in written] == [
        "maintenance-20261201T180000Z.json",
        "maintenance-latest.json",
        "maintenance-latest.md",
        "maintenance-latest.png",
    ]
    table = (tmp_path / "maintenance-latest.md").read_text()
    assert f"| {BRONZE} | 36 / 19 | 38 / 21 | 10 / 10 |" in table
    assert "| without | 2.000 | 5.000 | 0 |" in table and "| with | 1.000 | 2.500 | 1 |" in table
    assert f"| {BRONZE} | 1 of 2 | 12 -> 1 | 0 files | OPTIMIZE 1, VACUUM END 2 |  |" in table
    assert f"| {GOLD} | 0 of 2 | 0 -> 0 | 0 files | - | OPTIMIZE waited" in table
    assert "at the last sample, of those the generator sent by then: without 780 of 990;" in table
    assert maintenance_run.QUERY in table
    assert (tmp_path / "maintenance-latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
