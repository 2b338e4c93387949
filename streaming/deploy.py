"""`headwater run`: the whole pipeline, deployed as conf/pipeline.yaml's `deployment.mode` says.

- single_application: every layer's queries in this process's Spark application;
- application_per_layer: one spark-submit application per layer (streaming/jobs/<layer>.py),
  supervised from here: continuous mode starts them together and stops them all when one
  fails or on Ctrl-C; availableNow mode runs them in layer order, each to completion.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from streaming.config import Settings
from streaming.errors import HeadwaterError
from streaming.session import driver_java_options, local_fs_class_paths, local_fs_conf
from streaming.versions import spark_jars

log = logging.getLogger(__name__)
JOBS = Path(__file__).resolve().parent / "jobs"
LAYER_JOBS = ("bronze", "silver", "gold")


def submit_command(
    settings: Settings,
    layer: str,
    *,
    available_now: bool,
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
) -> list[str]:
    """The spark-submit command line of streaming/jobs/<layer>.py ('pipeline': every layer).

    `master` replaces the profile's spark.master; `conf` adds settings (a standalone
    cluster's, see devstack/services/spark_cluster.py). The jars go to the executors
    with --jars: the driver serves them.
    """
    spark_submit = Path(sys.executable).parent / "spark-submit"
    command = [
        str(spark_submit) if spark_submit.exists() else "spark-submit",
        "--jars",
        f"{settings.resolve(settings.profile.spark.jars_dir)}/*",
    ]
    master = master or settings.profile.spark.master
    if master:
        command += ["--master", master]
    for key, value in (conf or {}).items():
        command += ["--conf", f"{key}={value}"]
    java_options = driver_java_options(settings)
    if java_options:
        command += ["--driver-java-options", java_options]
    jars = spark_jars(Path(settings.resolve(settings.profile.spark.jars_dir)))
    if settings.profile.spark.fork_free_local_fs and jars.local_fs is not None:
        # From the driver's start: spark-submit itself reads the file system first.
        conf = local_fs_conf(jars.local_fs)
        conf.update(local_fs_class_paths(jars.local_fs, settings.profile.spark.extra_conf))
        for key, value in conf.items():
            if key == "spark.driver.extraClassPath":
                command += ["--driver-class-path", value]
            else:
                command += ["--conf", f"{key}={value}"]
    command += [
        str(JOBS / f"{layer}.py"),
        "--conf",
        str(settings.conf_dir),
        "--profile",
        settings.profile_name,
    ]
    return command + (["--available-now"] if available_now else [])


def deployed_layers(settings: Settings) -> list[str]:
    """The layers with at least one stream in conf (no gold tables: no gold application)."""
    from streaming.runner import stream_ids

    sources = settings.pipeline.sources
    return [layer for layer in LAYER_JOBS if stream_ids(settings, sources, [layer])]


def run_per_layer(settings: Settings, *, available_now: bool, stop: threading.Event) -> None:
    """Run one spark-submit application per layer that has streams (see the module
    docstring).

    Raises HeadwaterError naming the layer whose application failed.
    """
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    layers = deployed_layers(settings)
    if available_now:
        for layer in layers:
            if stop.is_set():
                return
            done = subprocess.run(
                submit_command(settings, layer, available_now=True), env=env, check=False
            )
            if done.returncode != 0:
                raise HeadwaterError(
                    f"the {layer} application exited with status {done.returncode}: see its log above"
                )
        return
    apps = {
        layer: subprocess.Popen(submit_command(settings, layer, available_now=False), env=env)
        for layer in layers
    }
    try:
        while not stop.is_set():
            failed = {layer: p.returncode for layer, p in apps.items() if p.poll() is not None}
            if failed:
                layer, code = next(iter(failed.items()))
                raise HeadwaterError(
                    f"the {layer} application stopped with status {code}: the others are stopped too"
                )
            stop.wait(1.0)
    finally:
        for process in apps.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        give_up = time.monotonic() + 120
        for process in apps.values():
            try:
                process.wait(timeout=max(1.0, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
