"""Bad config and a taken port stop with one clear sentence (exit status 2, no traceback)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devstack.cli import main
from devstack.services.kafka_broker import LocalKafka
from devstack.services.ports import free_port
from streaming.errors import ServiceError
from tests.conftest import write_conf

pytestmark = pytest.mark.unit


def test_bad_config_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_conf(tmp_path)
    (tmp_path / "conf/pipeline.yaml").write_text("sources:\n  - topic: 'bad topic!'\n")
    assert main(["--conf", str(tmp_path / "conf"), "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, "one line, no traceback"
    assert err.startswith("headwater: ") and "pipeline.yaml: field 'sources.0.topic'" in err


def test_taken_port_is_named_with_the_setting_to_change(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        settings = write_conf(tmp_path, kafka_port=taken, controller_port=free_port())
        with pytest.raises(ServiceError) as err:
            LocalKafka.from_settings(settings).up()
    assert str(err.value) == (
        f"port {taken} on 127.0.0.1 is already in use by another program: stop it, "
        "or set local_kafka.port to a free port in the profile"
    )


def test_taken_port_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        write_conf(tmp_path, kafka_port=free_port(), controller_port=taken)
        assert main(["--conf", str(tmp_path / "conf"), "up"]) == 2
    err = capsys.readouterr().err
    assert f"port {taken} on 127.0.0.1 is already in use" in err
    assert "set local_kafka.controller_port to a free port" in err


def test_missing_jar_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_conf(tmp_path, spark={"jars_dir": str(tmp_path / "no-jars")})
    assert main(["--conf", str(tmp_path / "conf"), "check"]) == 2
    err = capsys.readouterr().err
    assert "no-jars is missing or empty: run `make jars`" in err


def test_profile_without_local_broker_explains(capsys: pytest.CaptureFixture[str]) -> None:
    repo_conf = Path(__file__).resolve().parents[2] / "conf"
    assert main(["--conf", str(repo_conf), "--profile", "cluster", "up"]) == 2
    assert "profile 'cluster' has no local_kafka block" in capsys.readouterr().err


def test_demo_seconds_bounds_the_demo_and_a_bad_value_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import devstack.cli
    import devstack.demo

    write_conf(tmp_path)
    monkeypatch.setattr(devstack.cli, "stop_on_signals", lambda stop: None)  # pytest's own
    asked: list[float | None] = []
    monkeypatch.setattr(
        devstack.demo, "run_demo", lambda settings, *, seconds, **_: asked.append(seconds)
    )
    conf = ["--conf", str(tmp_path / "conf"), "demo", "--no-ui"]
    monkeypatch.setenv("DEMO_SECONDS", "45")
    assert main(conf) == 0
    assert main([*conf, "--seconds", "7"]) == 0  # the option wins over the environment
    monkeypatch.delenv("DEMO_SECONDS")
    assert main(conf) == 0  # neither: until Ctrl-C
    assert asked == [45.0, 7.0, None]
    monkeypatch.setenv("DEMO_SECONDS", "a minute")
    assert main(conf) == 2
    err = capsys.readouterr().err
    assert "DEMO_SECONDS must be a number of seconds, got 'a minute'" in err
    assert asked == [45.0, 7.0, None]
