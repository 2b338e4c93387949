"""The supervisor sensor of the continuous pipeline: observe every stream, keep one run alive.

Each tick reads, without Spark, who holds the stream locks (streaming.locks), the streams'
heartbeats (streaming.progress) and the `headwater_continuous` runs of the instance, then:

- reports the tables' new Delta commits as materializations without a run
  (materializations.py) and records an AssetObservation per table: its stream's lag, input
  rate, batch id and the seconds since its last batch;
- decides (`decide`, a pure function): nothing to do (healthy, or a run is starting); start a
  run (no run, no stream running; after a death it also raises an alert); replace a stuck run
  (started, but no heartbeat of its process moved for `stuck_after_seconds`); or only
  observe, when the streams are run outside Dagster (`headwater run`, the demo).

A restart's run key names the run that died, so one death yields one restart; the cursor
keeps the last alert's key, so one death raises one alert.
"""

import json
import os
import re
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import dagster as dg

from orchestration.defs.alerts import alert
from orchestration.defs.keys import table_key
from orchestration.defs.streams.continuous import (
    CONTINUOUS_JOB,
    RESTART_REASON_TAG,
    RUN_TAGS,
    WORKER_HOST_TAG,
    WORKER_PID_TAG,
)
from orchestration.defs.streams.freshness_checks import evaluate_freshness
from orchestration.defs.streams.materializations import report_commits
from orchestration.pipes_pipeline import OWNER_PREFIX
from streaming.catalog import pipeline_tables
from streaming.config import Settings
from streaming.locks import Holder, holder
from streaming.progress import Heartbeat, read_heartbeats
from streaming.runner import query_names

Action = Literal["healthy", "wait", "observe", "start", "restart", "replace_stuck"]

PENDING = ("QUEUED", "NOT_STARTED", "STARTING")
ACTIVE = (*PENDING, "STARTED", "CANCELING")
_RUN_ID = re.compile(re.escape(OWNER_PREFIX) + r" ([0-9a-fA-F-]{36})")
_HOST = re.compile(r" on (\S+)$")


@dataclass(frozen=True)
class RunState:
    """A headwater_continuous run as the supervisor sees it (times in epoch seconds)."""

    run_id: str
    status: str  # a DagsterRunStatus value
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None


@dataclass(frozen=True)
class Situation:
    """Everything a tick decides on."""

    now: float
    holders: Mapping[str, Holder | None]  # by stream id; None: nobody runs it
    active: Sequence[RunState]  # continuous runs not finished, newest first
    last_finished: RunState | None  # the newest finished continuous run
    last_beat_by_pid: Mapping[int, float]  # newest heartbeat time of each driver process
    stuck_after_s: float
    # Active runs whose recorded process (the run worker's pid on this host) no longer
    # exists, with that process: a run Dagster lost when it was killed itself.
    gone: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    run_key: str | None = None  # of the run to request (start, restart, replace_stuck)
    terminate_run: str | None = None  # replace_stuck: the stuck run
    stop_pid: int | None = None  # replace_stuck: its driver process, to stop
    dead_run: str | None = None  # a run whose process is gone: marked failed at once
    alert: bool = False

    @property
    def requests_run(self) -> bool:
        return self.action in ("start", "restart", "replace_stuck")


def dagster_run_of(h: Holder) -> str | None:
    """The continuous run whose process holds a lock, from the lock's owner; None when the
    holder is not a Dagster continuous run (`headwater run`, the demo, a micro-batch run)."""
    found = _RUN_ID.search(h.owner)
    return found.group(1) if found else None


def host_of(h: Holder) -> str | None:
    found = _HOST.search(h.owner)
    return found.group(1) if found else None


def _ago(now: float, then: float) -> str:
    return f"{max(0.0, now - then):,.0f} s"


def decide(s: Situation) -> Decision:
    """What the supervisor does about the continuous pipeline in situation `s`."""
    # Maintenance holds a table's stream for its compaction only, and a pipeline waits for
    # it (streaming.locks): it is not a pipeline.
    held = {stream: h for stream, h in s.holders.items() if h is not None and not h.is_maintenance}
    active_ids = {r.run_id for r in s.active}

    outsiders = [h for h in held.values() if dagster_run_of(h) is None]
    if outsiders:
        h = outsiders[0]
        by = (
            f"by another Dagster job's run, {h.describe()}"  # micro-batch, backfill, replay
            if h.owner.startswith("dagster run ")
            else f"outside Dagster by {h.describe()}"
        )
        return Decision(
            "observe",
            f"the pipeline is run {by} (stream {h.stream}): observing only, no continuous "
            "run is started while it runs",
        )
    orphans = [h for h in held.values() if dagster_run_of(h) not in active_ids]
    if orphans:
        h = orphans[0]
        return Decision(
            "observe",
            f"stream {h.stream} is held by {h.describe()}, a process of continuous run "
            f"{dagster_run_of(h)} which Dagster no longer counts as running: observing only; "
            f"stop pid {h.pid} to hand the streams back to the supervisor",
            run_key=f"orphan:{dagster_run_of(h)}",
            alert=True,
        )

    if not s.active:
        last = s.last_finished
        if last is None:
            return Decision(
                "start",
                "no continuous run exists and no stream is running: starting the pipeline",
                run_key="start:first",
            )
        ended = f" {_ago(s.now, last.ended_at)} ago" if last.ended_at is not None else ""
        if last.status == "FAILURE":
            return Decision(
                "restart",
                f"continuous run {last.run_id} died (it ended FAILURE{ended}) and no stream is "
                "running: restarting the pipeline",
                run_key=f"after:{last.run_id}",
                alert=True,
            )
        return Decision(
            "start",
            f"continuous run {last.run_id} ended {last.status}{ended} and no stream is running: "
            "starting the pipeline again (turn this sensor off to keep it stopped)",
            run_key=f"after:{last.run_id}",
        )

    run = s.active[0]
    others = f" (and {len(s.active) - 1} more active)" if len(s.active) > 1 else ""
    if run.status in PENDING:
        return Decision("wait", f"continuous run {run.run_id} is {run.status}{others}")
    if run.status == "CANCELING":
        return Decision("wait", f"continuous run {run.run_id} is stopping{others}")

    since = run.started_at if run.started_at is not None else run.created_at
    mine = [h for h in held.values() if dagster_run_of(h) == run.run_id]
    if not mine:
        if s.gone.get(run.run_id):
            return Decision(
                "replace_stuck",
                f"continuous run {run.run_id} is dead: Dagster still counts it {run.status}, "
                f"but its process ({s.gone[run.run_id]}) is gone and no process of it holds "
                "the stream locks: marking it failed and starting a new run",
                run_key=f"gone:{run.run_id}",
                dead_run=run.run_id,
                alert=True,
            )
        if s.now - since > s.stuck_after_s:
            return Decision(
                "replace_stuck",
                f"continuous run {run.run_id} is stuck: STARTED {_ago(s.now, since)} ago but no "
                f"process of it holds the stream locks (stuck after {s.stuck_after_s:,.0f} s): "
                "terminating it and starting a new run",
                run_key=f"stuck:{run.run_id}",
                terminate_run=run.run_id,
                alert=True,
            )
        return Decision(
            "wait",
            f"continuous run {run.run_id} is starting: its process has not taken the stream "
            f"locks yet (STARTED {_ago(s.now, since)} ago){others}",
        )
    pid = mine[0].pid
    beat = s.last_beat_by_pid.get(pid)
    alive = max(beat or 0.0, since)
    if s.now - alive > s.stuck_after_s:
        last_sign = (
            f"its last heartbeat was {_ago(s.now, beat)} ago" if beat else "no heartbeat yet"
        )
        return Decision(
            "replace_stuck",
            f"continuous run {run.run_id} (pid {pid}) is stuck: {last_sign}, more than "
            f"stuck_after_seconds ({s.stuck_after_s:,.0f} s): terminating it and starting a "
            "new run",
            run_key=f"stuck:{run.run_id}",
            terminate_run=run.run_id,
            stop_pid=pid,
            alert=True,
        )
    heard = f"last heartbeat {_ago(s.now, beat)} ago" if beat else "no batch yet"
    return Decision(
        "healthy",
        f"continuous run {run.run_id} (pid {pid}) is healthy: it holds {len(mine)} of "
        f"{len(s.holders)} streams, {heard}{others}",
    )


# --- reading the world -----------------------------------------------------------------------


def _epoch(value: datetime | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def _state(record: dg.RunRecord) -> RunState:
    return RunState(
        record.dagster_run.run_id,
        record.dagster_run.status.value,
        _epoch(record.create_timestamp) or 0.0,
        _epoch(record.start_time),
        _epoch(record.end_time),
    )


def continuous_runs(instance: dg.DagsterInstance) -> tuple[list[RunState], RunState | None]:
    """(active continuous runs newest first, the newest finished one)."""
    active = instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=CONTINUOUS_JOB, statuses=[dg.DagsterRunStatus(s) for s in ACTIVE]
        )
    )
    finished = instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=CONTINUOUS_JOB,
            statuses=[
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            ],
        ),
        limit=1,
    )
    return [_state(r) for r in active], (_state(finished[0]) if finished else None)


def observe(
    settings: Settings, beats: Mapping[str, Heartbeat], now: float
) -> list[dg.AssetObservation]:
    """An observation per table whose stream has a heartbeat: lag, rate, batch, age."""
    queries = query_names(settings)
    out: list[dg.AssetObservation] = []
    for table in pipeline_tables(settings):
        beat = beats.get(queries[table.stream])
        if beat is None:
            continue
        since_batch = beat.seconds_since_batch(now)
        metadata: dict[str, dg.RawMetadataValue] = {
            "stream": table.stream,
            "query": beat.query_name,
            "status": beat.status,
            "batch_id": beat.batch_id if beat.batch_id is not None else -1,
            "input_rows_per_second": float(beat.input_rows_per_second or 0.0),
            "seconds_since_last_batch": float(round(since_batch, 1))
            if since_batch is not None
            else None,
            "seconds_since_heartbeat": round(beat.seconds_since_update(now), 1),
            "driver_pid": beat.pid,
        }
        if beat.offsets_behind_latest is not None:
            metadata["offsets_behind_latest"] = beat.offsets_behind_latest
        out.append(
            dg.AssetObservation(
                asset_key=table_key(table),
                metadata={k: v for k, v in metadata.items() if v is not None},
            )
        )
    return out


def situation(settings: Settings, instance: dg.DagsterInstance, now: float) -> Situation:
    streams = dict.fromkeys(t.stream for t in pipeline_tables(settings))
    beats = read_heartbeats(settings)
    by_pid: dict[int, float] = {}
    for beat in beats.values():
        by_pid[beat.pid] = max(by_pid.get(beat.pid, 0.0), beat.updated_at)
    active, last = continuous_runs(instance)
    return Situation(
        now=now,
        holders={s: holder(settings, s) for s in streams},
        active=active,
        last_finished=last,
        last_beat_by_pid=by_pid,
        stuck_after_s=settings.pipeline.orchestration.stuck_after_seconds,
        gone=gone_runs(instance, active),
    )


def gone_runs(instance: dg.DagsterInstance, active: Sequence[RunState]) -> dict[str, str]:
    """The active runs whose run worker (recorded by the op: WORKER_PID_TAG, WORKER_HOST_TAG)
    ran on this host and no longer exists, with a description of that process."""
    gone = {}
    for state in active:
        run = instance.get_run_by_id(state.run_id)
        tags = run.tags if run is not None else {}
        pid, host = tags.get(WORKER_PID_TAG), tags.get(WORKER_HOST_TAG)
        if pid is None or host != socket.gethostname():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            gone[state.run_id] = f"pid {pid} on {host}"
        except PermissionError:
            pass  # it exists, under another user
    return gone


def terminate(context: dg.SensorEvaluationContext, run_id: str, reason: str) -> None:
    """Stop a stuck run the way the UI does (the run coordinator asks its launcher); when no
    launcher can reach it (a run started by `dagster job execute`), mark it failed."""
    instance = context.instance
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        return
    try:
        stopped = instance.run_coordinator.cancel_run(run_id)
    except Exception:  # an unreachable code server: mark it failed below instead
        context.log.exception(f"could not ask run {run_id} to stop")
        stopped = False
    if not stopped:
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            instance.report_run_failed(run, message=f"headwater supervisor: {reason}")


def stop_process(context: dg.SensorEvaluationContext, h: Holder | None) -> None:
    """SIGTERM the stuck driver when it runs on this machine (its streams end their batch and
    let go of the locks; the new run waits for them)."""
    if h is None or h.pid <= 0 or host_of(h) != socket.gethostname():
        return
    try:
        os.kill(h.pid, signal.SIGTERM)
        context.log.info(f"sent SIGTERM to the stuck pipeline process {h.pid}")
    except ProcessLookupError:
        pass
    except PermissionError:
        context.log.warning(f"not allowed to stop pid {h.pid}; stop it by hand")


def supervisor_sensor(settings: Settings) -> dg.SensorDefinition:
    """The sensor `headwater_continuous_supervisor`: running by default when conf's
    default_mode is continuous."""
    conf = settings.pipeline.orchestration
    status = (
        dg.DefaultSensorStatus.RUNNING
        if conf.default_mode == "continuous"
        else dg.DefaultSensorStatus.STOPPED
    )

    @dg.sensor(
        name=f"{CONTINUOUS_JOB}_supervisor",
        job_name=CONTINUOUS_JOB,
        minimum_interval_seconds=conf.supervisor_interval_seconds,
        default_status=status,
        description="Observes every stream's lag and rate; starts the continuous pipeline when "
        "nothing runs it, restarts it after a death, replaces it when stuck.",
    )
    def _supervise(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = time.time()
        seen = situation(settings, context.instance, now)
        decision = decide(seen)
        cursor = json.loads(context.cursor) if context.cursor else {}
        materialized, cursor["reported"], wrote = report_commits(
            settings, cursor.get("reported", {}), now
        )
        fresh = evaluate_freshness(settings, wrote, cursor.get("freshness", {}), now)
        cursor["freshness"] = fresh.state
        observations: list[
            dg.AssetObservation | dg.AssetMaterialization | dg.AssetCheckEvaluation
        ] = [
            *materialized,
            *fresh.evaluations,  # after the materializations they follow
            *observe(settings, read_heartbeats(settings), now),
        ]
        context.log.info(f"headwater supervisor: {decision.action}: {decision.reason}")
        for found in fresh.turned_stale:
            alert(
                settings,
                found.describe(),
                {"table": found.table, "check": "freshness", "sla_minutes": found.sla_minutes},
                logger=context.log,
            )
        if decision.alert and decision.run_key and cursor.get("alerted") != decision.run_key:
            alert(
                settings,
                decision.reason,
                {"action": decision.action, "run_key": decision.run_key},
                logger=context.log,
            )
            cursor["alerted"] = decision.run_key
        if decision.dead_run is not None:
            # Nothing of it is left to ask to stop (a cancel would wait on it forever).
            dead = context.instance.get_run_by_id(decision.dead_run)
            if dead is not None and not dead.is_finished:
                context.instance.report_run_failed(
                    dead, message=f"headwater supervisor: {decision.reason}"
                )
        if decision.terminate_run is not None:
            terminate(context, decision.terminate_run, decision.reason)
            pid_holder = next(
                (h for h in seen.holders.values() if h is not None and h.pid == decision.stop_pid),
                None,
            )
            stop_process(context, pid_holder)
        if decision.requests_run:
            return dg.SensorResult(
                run_requests=[
                    dg.RunRequest(
                        run_key=decision.run_key,
                        tags={**RUN_TAGS, RESTART_REASON_TAG: decision.reason},
                    )
                ],
                asset_events=observations,
                cursor=json.dumps(cursor),
            )
        return dg.SensorResult(
            skip_reason=decision.reason, asset_events=observations, cursor=json.dumps(cursor)
        )

    return _supervise
