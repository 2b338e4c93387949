"""The supervisor's decision, as a pure function of what one tick sees: who holds the
stream locks, which continuous runs exist, when each driver last showed life."""

from __future__ import annotations

import pytest

from orchestration.defs.streams.supervisor import (
    Decision,
    RunState,
    Situation,
    dagster_run_of,
    decide,
)
from streaming.locks import Holder

pytestmark = pytest.mark.unit

NOW = 10_000.0
STUCK = 180.0
STREAMS = ("bronze:shop.orders", "silver:shop.orders")
RUN = "3f2c1a6e-1b2c-4d5e-8f90-1234567890ab"
OLD = "0a1b2c3d-1b2c-4d5e-8f90-1234567890ab"


def held_by(owner: str, pid: int = 4242) -> dict[str, Holder | None]:
    return {s: Holder(s, pid, f"{owner} on host-1", NOW - 500) for s in STREAMS}


FREE: dict[str, Holder | None] = dict.fromkeys(STREAMS)


def situation(
    holders: dict[str, Holder | None],
    active: list[RunState] | None = None,
    last: RunState | None = None,
    beats: dict[int, float] | None = None,
) -> Situation:
    return Situation(NOW, holders, active or [], last, beats or {}, STUCK)


def started(run_id: str = RUN, ago: float = 600.0) -> RunState:
    return RunState(run_id, "STARTED", NOW - ago - 5, NOW - ago)


def test_first_start_when_nothing_exists() -> None:
    d = decide(situation(FREE))
    assert (d.action, d.run_key, d.alert) == ("start", "start:first", False)
    assert d.requests_run


def test_a_dead_run_is_restarted_once_with_an_alert() -> None:
    dead = RunState(OLD, "FAILURE", NOW - 900, NOW - 890, NOW - 20)
    d = decide(situation(FREE, last=dead))
    assert d.action == "restart" and d.alert
    assert d.run_key == f"after:{OLD}"  # the same death, the same key: one restart
    assert OLD in d.reason and "FAILURE" in d.reason
    assert decide(situation(FREE, last=dead)).run_key == d.run_key


def test_a_run_stopped_on_purpose_is_started_again_without_an_alert() -> None:
    d = decide(situation(FREE, last=RunState(OLD, "CANCELED", NOW - 900, NOW - 890, NOW - 20)))
    assert (d.action, d.alert, d.run_key) == ("start", False, f"after:{OLD}")


@pytest.mark.parametrize("status", ["QUEUED", "NOT_STARTED", "STARTING", "CANCELING"])
def test_never_a_second_run_while_one_is_on_its_way(status: str) -> None:
    d = decide(situation(FREE, active=[RunState(RUN, status, NOW - 5)]))
    assert d.action == "wait" and not d.requests_run


def test_a_run_whose_process_beats_is_healthy() -> None:
    d = decide(
        situation(held_by(f"dagster continuous run {RUN}"), [started()], beats={4242: NOW - 3})
    )
    assert d.action == "healthy" and not d.requests_run and not d.alert


def test_old_heartbeats_of_other_processes_do_not_count() -> None:
    d = decide(
        situation(
            held_by(f"dagster continuous run {RUN}"),
            [started()],
            beats={4242: NOW - STUCK - 60, 999: NOW - 1},
        )
    )
    assert d.action == "replace_stuck"
    assert (d.terminate_run, d.stop_pid, d.run_key) == (RUN, 4242, f"stuck:{RUN}")
    assert "stuck" in d.reason and d.alert and d.requests_run


def test_a_fresh_run_is_not_stuck_before_its_first_heartbeat() -> None:
    d = decide(situation(held_by(f"dagster continuous run {RUN}"), [started(ago=30)]))
    assert d.action == "healthy"


def test_a_started_run_without_locks_is_starting_then_stuck() -> None:
    assert decide(situation(FREE, [started(ago=20)])).action == "wait"
    d = decide(situation(FREE, [started(ago=STUCK + 1)]))
    assert d.action == "replace_stuck" and d.terminate_run == RUN and d.stop_pid is None


def test_a_pipeline_run_outside_dagster_is_only_observed() -> None:
    d = decide(situation(held_by("headwater run"), last=RunState(OLD, "FAILURE", 1, 2, 3)))
    assert d.action == "observe" and not d.requests_run and not d.alert
    assert "outside Dagster by headwater run on host-1 (pid 4242" in d.reason


def test_a_micro_batch_run_holding_the_streams_is_only_observed() -> None:
    d = decide(situation(held_by(f"dagster run {OLD}")))
    assert d.action == "observe" and not d.requests_run
    assert f"by another Dagster job's run, dagster run {OLD}" in d.reason


def test_a_process_of_a_finished_run_is_an_orphan_observed_with_an_alert() -> None:
    d = decide(situation(held_by(f"dagster continuous run {OLD}")))
    assert d == Decision(d.action, d.reason, f"orphan:{OLD}", alert=True)
    assert d.action == "observe" and "stop pid 4242" in d.reason


def test_the_run_id_is_read_from_the_lock_owner() -> None:
    [h, *_] = [h for h in held_by(f"dagster continuous run {RUN}").values() if h]
    assert dagster_run_of(h) == RUN
    [h, *_] = [h for h in held_by("headwater demo").values() if h]
    assert dagster_run_of(h) is None


def test_a_run_whose_worker_is_gone_is_replaced_at_the_next_tick() -> None:
    """Dagster was killed with a continuous run going: after its restart the run still counts
    as STARTED, but its worker process is gone; no need to wait for stuck_after_seconds."""
    just_started = started(ago=20.0)
    waiting = decide(situation(FREE, [just_started]))
    assert waiting.action == "wait"  # without a recorded worker, a young run is starting
    gone = Situation(NOW, FREE, [just_started], None, {}, STUCK, gone={RUN: "pid 77 on host-1"})
    d = decide(gone)
    assert d.action == "replace_stuck" and d.requests_run and d.alert
    assert d.dead_run == RUN and d.terminate_run is None  # marked failed, not asked to stop
    assert d.run_key == f"gone:{RUN}" and "pid 77" in d.reason


def test_maintenance_holding_a_stream_is_not_a_pipeline() -> None:
    """The hourly maintenance holds one table's stream for its compaction: the supervisor
    starts the pipeline (which waits for that lock) instead of only observing."""
    maintenance = {
        STREAMS[0]: Holder(STREAMS[0], 99, f"headwater maintenance (dagster run {OLD}) on h", NOW),
        STREAMS[1]: None,
    }
    d = decide(situation(maintenance))
    assert (d.action, d.run_key) == ("start", "start:first")
    other_job = held_by(f"dagster run {OLD}")
    assert decide(situation(other_job)).action == "observe"
