"""A benchmark's own corner of the machine: a copy of conf/ whose state, lake and broker live in
a scratch directory, so a benchmark never touches the demo's .headwater/ or its broker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from devstack.services.ports import free_port
from streaming.config import Settings, load_settings


def copy_conf(conf: Path, target: Path) -> Path:
    """conf/ copied to `target` (every file, the folder layout kept)."""
    for path in conf.rglob("*"):
        if path.is_file():
            copy = target / path.relative_to(conf)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
    return target


def scratch_settings(
    conf: Path,
    profile: str,
    root: Path,
    *,
    spark_conf: dict[str, str] | None = None,
    kafka_port: int | None = None,
    topic_prefix: str | None = None,
    pipeline: dict[str, Any] | None = None,
) -> Settings:
    """The repo's conf with the profile's state and lake moved under `root`.

    `spark_conf` joins the profile's Spark extra_conf; `kafka_port` points Kafka (and the
    local broker block) at a broker of the benchmark's own; `topic_prefix` renames every
    source topic (and its contract) to `<prefix>.<topic>`, so several runs share a broker
    without sharing topics; `pipeline` replaces top-level blocks of pipeline.yaml.
    """
    copy = copy_conf(conf, root / "conf")
    profile_file = copy / "profiles" / f"{profile}.yaml"
    doc = yaml.safe_load(profile_file.read_text())
    project = conf.resolve().parent
    doc["state_dir"] = str(root / "state")
    doc["lake"] = {"root": str(root / "lake"), "checkpoints": str(root / "checkpoints")}
    spark = doc.setdefault("spark", {})
    for key in ("jars_dir", "log_config"):
        if spark.get(key):
            spark[key] = str(project / spark[key])
    spark.setdefault("extra_conf", {}).update(spark_conf or {})
    spark["ui_enabled"] = False
    if kafka_port is not None:
        doc["kafka"] = {**doc.get("kafka", {}), "bootstrap_servers": f"127.0.0.1:{kafka_port}"}
        local = doc.setdefault("local_kafka", {})
        local.update({"port": kafka_port, "controller_port": free_port()})
        for key in ("jars_dir", "config_dir"):
            if local.get(key):
                local[key] = str(project / local[key])
    profile_file.write_text(yaml.safe_dump(doc))
    pipeline_file = copy / "pipeline.yaml"
    plan = merged(yaml.safe_load(pipeline_file.read_text()), pipeline or {})
    if topic_prefix:
        _prefix_topics(copy, plan, topic_prefix)
    pipeline_file.write_text(yaml.safe_dump(plan))
    return load_settings(copy, profile, environ={})


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in: mappings key by key, other values replaced."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _prefix_topics(conf: Path, plan: dict[str, Any], prefix: str) -> None:
    for source in plan["sources"]:
        topic = source["topic"]
        contract = conf / "contracts" / f"{topic}.yaml"
        source["topic"] = f"{prefix}.{topic}"
        if contract.is_file():
            text = contract.read_text().replace(f"topic: {topic}", f"topic: {prefix}.{topic}")
            (conf / "contracts" / f"{prefix}.{topic}.yaml").write_text(text)
            contract.unlink()


@contextmanager
def local_broker(settings: Settings) -> Iterator[Settings]:
    """The profile's local broker, started for the benchmark and stopped after it."""
    from devstack.services.kafka_broker import LocalKafka

    broker = LocalKafka.from_settings(settings)
    broker.up()
    try:
        yield settings
    finally:
        broker.down()
