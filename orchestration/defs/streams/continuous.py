"""The continuous run mode: one Dagster run holds the whole pipeline as a Pipes subprocess.

The job's one op launches `python -m orchestration.pipes_pipeline` with
`PipesSubprocessClient`; the process runs every stream until the run is terminated (Dagster
sends SIGINT, the streams end their batch and stop) and reports rows, rates and lag to the
run's log every few seconds. If the process dies, the op fails and so does the run; the
supervisor sensor (supervisor.py) starts the next one.

Only one continuous run may exist at a time. The sensor never requests a run while one is
queued or running, every stream lock admits one writer, and the run tag `headwater/mode:
continuous` lets the run queue enforce it too. In `$DAGSTER_HOME/dagster.yaml`:

    run_queue:
      tag_concurrency_limits:
        - key: "headwater/mode"
          value: "continuous"
          limit: 1
"""

import os
import socket
import sys

import dagster as dg

from orchestration.defs.resources import HeadwaterResource
from streaming.catalog import pipeline_tables
from streaming.config import Settings

CONTINUOUS_JOB = "headwater_continuous"
MODE_TAG = "headwater/mode"
CONTINUOUS = "continuous"
RESTART_REASON_TAG = "headwater/restart-reason"
RUN_TAGS = {MODE_TAG: CONTINUOUS}
# The run worker's process, recorded on the run when the op starts: a run Dagster still counts
# as running after Dagster itself was killed is known dead when this process is gone.
WORKER_PID_TAG = "headwater/worker-pid"
WORKER_HOST_TAG = "headwater/worker-host"
# How long the pipeline may take to end its batch and stop after Dagster asks it to.
STOP_TIMEOUT_S = 120.0


def pipeline_command(conf_dir: str, profile: str) -> list[str]:
    """The command of the continuous pipeline process (this interpreter, this checkout)."""
    return [
        sys.executable,
        "-m",
        "orchestration.pipes_pipeline",
        "--conf",
        conf_dir,
        "--profile",
        profile,
    ]


@dg.op(name="run_continuous_pipeline")
def run_continuous_pipeline(context: dg.OpExecutionContext, headwater: HeadwaterResource) -> None:
    """Run every stream of conf until this run is terminated; fails when the pipeline dies."""
    context.instance.add_run_tags(
        context.run_id, {WORKER_PID_TAG: str(os.getpid()), WORKER_HOST_TAG: socket.gethostname()}
    )
    settings = headwater.settings()
    conf_dir, profile = str(settings.conf_dir), settings.profile_name
    client = dg.PipesSubprocessClient(
        forward_termination=True, termination_timeout_seconds=STOP_TIMEOUT_S
    )
    context.log.info(f"starting the continuous pipeline of {conf_dir} (profile {profile})")
    client.run(
        context=context,
        command=pipeline_command(conf_dir, profile),
        env={"HEADWATER_CONF": conf_dir, "HEADWATER_PROFILE": profile},
    )


def continuous_job(settings: Settings) -> dg.JobDefinition:
    """The job `headwater_continuous`: the whole pipeline, continuously, in one Pipes process."""
    streams = sorted({t.stream for t in pipeline_tables(settings)})

    @dg.job(
        name=CONTINUOUS_JOB,
        tags=RUN_TAGS,
        run_tags=RUN_TAGS,
        executor_def=dg.in_process_executor,
        description="Run every stream continuously until terminated ("
        + ", ".join(streams)
        + "); the supervisor sensor restarts it when it dies or stalls.",
    )
    def _continuous() -> None:
        run_continuous_pipeline()

    return _continuous
