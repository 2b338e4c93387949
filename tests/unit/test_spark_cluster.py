"""The local Spark standalone cluster's conf, its spark-submit line and its CLI, without
starting it (tests/cluster/test_spark_submit.py starts one)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from devstack.cli import main
from devstack.services.ports import free_ports
from devstack.services.spark_cluster import SparkStandalone
from streaming.config import load_settings
from streaming.errors import ConfigError, ServiceError
from tests.conftest import REPO, write_conf

pytestmark = pytest.mark.unit


def cluster_conf(tmp_path: Path, **block: object) -> SparkStandalone:
    master, webui = free_ports(2)
    block = {"master_port": master, "webui_port": webui, **block}
    settings = write_conf(tmp_path, profile={"local_spark_cluster": block})
    return SparkStandalone.from_settings(settings)


def test_the_local_profile_runs_two_one_core_workers() -> None:
    local = load_settings(REPO / "conf", "local", environ={}).profile.local_spark_cluster
    assert local is not None
    assert (local.workers, local.worker_cores, local.worker_memory) == (2, 1, "1g")
    assert load_settings(REPO / "conf", "cluster", environ={}).profile.local_spark_cluster is None


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ({"worker_memory": "lots"}, "local_spark_cluster.worker_memory"),
        ({"master_port": 7077, "webui_port": 7077}, "must differ"),
        ({"workers": 0}, "local_spark_cluster.workers"),
    ],
)
def test_a_bad_block_names_its_field(
    tmp_path: Path, block: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        write_conf(tmp_path, profile={"local_spark_cluster": block})


def test_a_profile_without_the_block_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no local_spark_cluster block"):
        SparkStandalone.from_settings(write_conf(tmp_path))


def test_applications_run_on_loopback_in_executors_that_fit_the_workers(tmp_path: Path) -> None:
    cluster = cluster_conf(tmp_path, workers=2, worker_cores=1, worker_memory="1g")
    settings = write_conf(tmp_path / "app", spark={"master": None})
    command = cluster.submit_command(settings, "pipeline", available_now=True)
    assert command[command.index("--master") + 1] == cluster.master_url
    assert cluster.master_url.startswith("spark://127.0.0.1:")
    submit = command[: command.index(str(REPO / "streaming/jobs/pipeline.py"))]
    conf = dict(submit[i + 1].split("=", 1) for i, arg in enumerate(submit) if arg == "--conf")
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert (conf["spark.executor.cores"], conf["spark.executor.memory"]) == ("1", "1g")
    assert conf["spark.cores.max"] == "2"
    assert conf["spark.pyspark.python"] == sys.executable  # imports `streaming`
    # The workers share this machine: headwater's file system jar is on the executors'
    # class path from their start, as on the driver's.
    jar = command[command.index("--driver-class-path") + 1]
    assert "headwater-localfs-" in jar and conf["spark.executor.extraClassPath"] == jar
    assert command[command.index("--jars") + 1].endswith("infra/jars/spark/*")
    job = [str(REPO / "streaming/jobs/pipeline.py"), "--conf", str(settings.conf_dir)]
    assert command[-6:] == [*job, "--profile", "local", "--available-now"]
    assert cluster.submit_env()["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_a_taken_port_stops_up_with_the_setting_to_change(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cluster = cluster_conf(tmp_path, master_port=taken.getsockname()[1])
        with pytest.raises(ServiceError, match=r"local_spark_cluster\.master_port"):
            cluster.up()
    assert not cluster.down()


def test_cluster_status_of_a_stopped_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = cluster_conf(tmp_path)
    conf = str(tmp_path / "conf")
    assert main(["--conf", conf, "cluster", "status"]) == 1
    assert capsys.readouterr().out.strip() == "spark: stopped"
    assert main(["--conf", conf, "cluster", "down"]) == 0
    assert "was not running" in capsys.readouterr().out
    assert not cluster.status().answering
