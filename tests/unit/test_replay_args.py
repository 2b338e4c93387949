"""Replay arguments that cannot work stop with one clear sentence, before Spark or Kafka."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from delta.exceptions import ConcurrentAppendException

from devstack.cli import main
from streaming.replay import (
    ReplayError,
    check_start,
    parse_offsets,
    parse_timestamp,
    retry_on_conflict,
)
from tests.conftest import write_conf

pytestmark = pytest.mark.unit


def test_exactly_one_start_is_required() -> None:
    with pytest.raises(ReplayError, match="say where the replay starts"):
        check_start(None, None)
    with pytest.raises(ReplayError, match="not both"):
        check_start(datetime(2026, 6, 1, tzinfo=UTC), {0: 0})
    check_start(None, {0: 0})
    check_start(datetime(2026, 6, 1, tzinfo=UTC), None)


def test_timestamps_are_iso_8601_and_utc_when_they_name_no_zone() -> None:
    assert parse_timestamp("2026-06-01T08:00:00") == datetime(2026, 6, 1, 8, tzinfo=UTC)
    assert (
        parse_timestamp("2026-06-01T10:00:00+02:00").timestamp()
        == datetime(2026, 6, 1, 8, tzinfo=UTC).timestamp()
    )
    with pytest.raises(ReplayError, match="not an ISO-8601 date-time"):
        parse_timestamp("yesterday")


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("{0: 1}", "not JSON"),
        ("[1, 2]", "non-empty mapping"),
        ("{}", "non-empty mapping"),
        ('{"0": -1}', "not allowed"),
        ('{"x": 1}', "not allowed"),
        ('{"0": "10"}', "not allowed"),
        ('{"0": true}', "not allowed"),
    ],
)
def test_bad_offsets_are_named(given: str, problem: str) -> None:
    with pytest.raises(ReplayError, match=problem):
        parse_offsets(given)


def test_offsets_from_json_or_a_mapping() -> None:
    assert parse_offsets('{"0": 10, "2": 0}') == {0: 10, 2: 0}
    assert parse_offsets({"1": 5}) == {1: 5}


def test_a_conflicting_commit_is_retried_then_reported() -> None:
    calls: list[int] = []

    def conflicts_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConcurrentAppendException(message="files were added concurrently")
        return "merged"

    assert retry_on_conflict(conflicts_twice, "bronze.x", attempts=3, pause_s=0) == "merged"
    assert len(calls) == 3

    def always_conflicts() -> Any:
        raise ConcurrentAppendException(message="files were added concurrently")

    with pytest.raises(ReplayError, match=r"bronze\.x kept changing under the replay"):
        retry_on_conflict(always_conflicts, "bronze.x", attempts=2, pause_s=0)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--topic", "nope", "--from-offsets", '{"0": 0}'], "no source 'nope'"),
        (["--topic", "shop.orders", "--from-offsets", "zero"], "not JSON"),
        (["--topic", "shop.orders", "--from-timestamp", "soon"], "not an ISO-8601"),
    ],
)
def test_cli_replay_errors_are_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], problem: str
) -> None:
    write_conf(tmp_path)
    assert main(["--conf", str(tmp_path / "conf"), "replay", *arguments]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("headwater: ") and err.count("\n") == 0 and problem in err


def test_cli_replay_needs_one_start(tmp_path: Path) -> None:
    write_conf(tmp_path)
    conf = ["--conf", str(tmp_path / "conf"), "replay", "--topic", "shop.orders"]
    with pytest.raises(SystemExit) as neither:
        main(conf)
    with pytest.raises(SystemExit) as both:
        main([*conf, "--from-offsets", '{"0": 0}', "--from-timestamp", "2026-06-01"])
    assert neither.value.code == both.value.code == 2
