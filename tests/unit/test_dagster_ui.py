"""The demo's Dagster UI process: a taken port says what to do, it is waited for with a
deadline, and stopping it ends its whole process group. A stand-in HTTP server plays
`dagster dev` here (the real one is in tests/e2e/test_demo.py)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import yaml

from devstack.services.dagster_ui import DagsterUi
from devstack.services.kafka_broker import port_in_use
from devstack.services.ports import free_port
from streaming.config import DagsterUiSettings, Settings, load_settings
from streaming.errors import ConfigError, ServiceError
from tests.conftest import write_conf

pytestmark = pytest.mark.unit


def settings_with_ui(tmp_path: Path, ui: dict[str, object]) -> Settings:
    write_conf(tmp_path)
    profile = tmp_path / "conf" / "profiles" / "local.yaml"
    doc = yaml.safe_load(profile.read_text())
    doc["dagster_ui"] = ui
    profile.write_text(yaml.safe_dump(doc))
    return load_settings(tmp_path / "conf", "local", environ={})


def stand_in(tmp_path: Path, port: int, shell_prefix: str = "") -> list[str]:
    """A web server answering GET /server_info on `port`, started through a shell that first
    runs `shell_prefix` (e.g. a grandchild), like dagster dev's webserver and daemon."""
    (tmp_path / "www").mkdir(exist_ok=True)
    (tmp_path / "www" / "server_info").write_text("{}")
    server = (
        f"{sys.executable} -m http.server {port} --bind 127.0.0.1 --directory {tmp_path / 'www'}"
    )
    return ["/bin/sh", "-c", f"{shell_prefix}{server}"]


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_profile_default_and_a_bad_port_named(tmp_path: Path) -> None:
    settings = load_settings(write_conf(tmp_path / "a").conf_dir, "local", environ={})
    assert settings.profile.dagster_ui == DagsterUiSettings(enabled=True, port=3000)
    with pytest.raises(ConfigError, match=r"local\.yaml: field 'dagster_ui\.port'"):
        settings_with_ui(tmp_path / "b", {"port": 70000})


def test_dagster_dev_gets_the_demo_conf_and_its_own_instance(tmp_path: Path) -> None:
    port = free_port()
    settings = settings_with_ui(tmp_path, {"port": port})
    ui = DagsterUi.from_settings(settings)
    dagster_dev = ui.command[ui.command.index(sys.executable) :]
    assert dagster_dev[1:] == ["-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)]
    assert (ui.cwd / "pyproject.toml").is_file(), "run from the checkout: code location headwater"
    assert ui.env["DAGSTER_HOME"] == str(tmp_path / "state" / "dagster")
    assert ui.env["HEADWATER_CONF"] == str(tmp_path / "conf")
    assert ui.env["HEADWATER_PROFILE"] == "local"
    assert ui.url == f"http://127.0.0.1:{port}"


def test_a_taken_port_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        ui = DagsterUi(DagsterUiSettings(port=port), tmp_path / "dagster", {})
        with pytest.raises(ServiceError) as raised:
            ui.start()
    message = str(raised.value)
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert "dagster_ui.port" in message and "--no-ui" in message
    assert ui.process is None, "nothing was started"


def test_started_waited_for_and_stopped_with_its_whole_group(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "dagster"
    grandchild = "sleep 600 & "  # outlives its parent unless the group is signalled
    ui = DagsterUi(
        DagsterUiSettings(port=port),
        home,
        {**os.environ},
        command=stand_in(tmp_path, port, grandchild),
    )
    ui.start()
    assert ui.process is not None
    group = ui.process.pid
    try:
        assert ui.wait_until_answering(deadline_s=60)
        assert ui.answers()
    finally:
        ui.stop(deadline_s=30)
    assert not group_alive(group), "webserver and its children are gone"
    assert not port_in_use(port)
    instance = yaml.safe_load((home / "dagster.yaml").read_text())
    assert instance["run_queue"]["tag_concurrency_limits"] == [
        {"key": "headwater/mode", "value": "continuous", "limit": 1}
    ]
    assert (home / "dagster-dev.log").is_file()


def test_a_process_that_ignores_sigterm_is_killed_after_the_deadline(tmp_path: Path) -> None:
    # A child that ignores SIGTERM and waits for signals forever: only SIGKILL ends it.
    stubborn = (
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: signal.pause()"
    )
    ui = DagsterUi(
        DagsterUiSettings(port=free_port()),
        tmp_path / "dagster",
        {**os.environ},
        command=[sys.executable, "-c", stubborn],
    )
    ui.start()
    assert ui.process is not None
    group = ui.process.pid
    ui.stop(deadline_s=1)
    assert not group_alive(group)


def test_a_ui_that_exits_while_starting_points_at_its_log(tmp_path: Path) -> None:
    ui = DagsterUi(
        DagsterUiSettings(port=free_port()),
        tmp_path / "dagster",
        {**os.environ},
        command=[sys.executable, "-c", "import sys; print('no code location'); sys.exit(3)"],
    )
    ui.start()
    try:
        with pytest.raises(
            ServiceError, match=r"exited with status 3 while starting: see .*dagster-dev\.log"
        ):
            ui.wait_until_answering(deadline_s=60)
    finally:
        ui.stop()
    assert "no code location" in ui.log_file.read_text()
