"""bench/profile_writer.py reads JFR's printed samples and sorts them by thread and activity."""

from __future__ import annotations

import pytest

from bench.profile_writer import ACTIVITIES, Sample, parse_samples, report, summarise

pytestmark = pytest.mark.unit


def event(thread: str, *frames: str) -> str:
    """One sample as `jfr print --events jdk.ExecutionSample` prints it, innermost frame first."""
    stack = "\n".join(f"    {frame}(Object) line: {n}" for n, frame in enumerate(frames, 1))
    return (
        "jdk.ExecutionSample {\n  startTime = 03:57:16.311\n"
        f'  sampledThread = "{thread}" (javaThreadId = 18)\n  state = "STATE_RUNNABLE"\n'
        f"  stackTrace = [\n{stack}\n    ...\n  ]\n}}\n\n"
    )


CODEGEN = "org.apache.spark.sql.catalyst.expressions.codegen.CodeFormatter$.stripExtraNewLines"
TASK = "org.apache.spark.executor.Executor$TaskRunner.run"
ANALYSER = "org.apache.spark.sql.catalyst.analysis.Analyzer.execute"
DELTA = "org.apache.spark.sql.delta.Snapshot.stateReconstruction"
PRINTED = (
    event("Executor task launch worker-1", "java.util.regex.Pattern$Node.match", CODEGEN, TASK)
    + event("Executor task launch worker-2", "java.util.regex.Pattern$Node.match", CODEGEN, TASK)
    + event("Thread-4", "scala.collection.immutable.List.map", ANALYSER, DELTA)
    + event("Thread-12", "java.lang.Object.<init>", "py4j.ClientServerConnection.run")
)


def test_samples_keep_their_thread_kind_and_frames_innermost_first() -> None:
    samples = parse_samples("some header line\n\n" + PRINTED)
    assert [s.thread for s in samples] == [
        "Executor task launch worker-N",
        "Executor task launch worker-N",
        "Thread-N",
        "Thread-N",
    ]
    assert samples[0].frames == ("java.util.regex.Pattern$Node.match", CODEGEN, TASK)
    assert samples[3].frames[-1] == "py4j.ClientServerConnection.run"


def test_activities_count_inclusively_and_by_thread() -> None:
    summary = summarise(parse_samples(PRINTED))
    assert summary["samples"] == 4
    assert summary["threads"] == {"Executor task launch worker-N": 0.5, "Thread-N": 0.5}
    activities = summary["activities"]
    assert set(activities) == set(ACTIVITIES)
    assert activities["code generation (source, formatting, compiling)"] == 0.5
    # One sample under both analysis and Delta's snapshot: counted for each.
    assert activities["analysis"] == 0.25 and activities["Delta snapshot and log"] == 0.25
    assert activities["Parquet read/write"] == 0.0
    assert (
        summary["activities_by_thread"][
            "Executor task launch worker-N: code generation (source, formatting, compiling)"
        ]
        == 0.5
    )
    assert summary["top_frames"]["java.util.regex.Pattern$Node.match"] == 0.5


def test_no_samples_is_an_empty_profile_not_a_division_by_zero() -> None:
    summary = summarise([])
    assert summary["samples"] == 0 and set(summary["activities"].values()) == {0.0}


def test_report_names_every_share() -> None:
    summary = summarise([Sample("Thread-N", (ANALYSER,))])
    text = report(summary, {"wall_s": 2.0, "cpu_s": 3.5, "python_cpu_s": 0.1})
    assert "1 samples; per call: 2.00 s wall, 3.50 CPU-s" in text
    assert "100.0%  analysis" in text and "100.0%  Thread-N" in text
