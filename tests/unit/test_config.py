"""conf/ loads into typed models; a bad file stops with a sentence naming file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from streaming.config import load_settings
from streaming.errors import ConfigError

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    return tmp_path / "conf"


def test_repository_conf_loads_both_profiles() -> None:
    local = load_settings(REPO / "conf", "local", environ={})
    assert [s.table_name for s in local.pipeline.sources] == [
        "shop_orders",
        "shop_payments",
        "shop_public_customers",
    ]
    assert local.pipeline.bronze.trigger_interval == "1 second"
    assert local.pipeline.bronze.fail_on_data_loss is True
    assert local.table_path("bronze", "shop_orders") == str(
        REPO / ".headwater/lake/bronze/shop_orders"
    )
    cluster = load_settings(REPO / "conf", "cluster", environ={})
    assert cluster.profile.spark.master is None
    assert cluster.profile.kafka.security_protocol == "SASL_SSL"
    assert cluster.table_path("silver", "orders") == "s3a://headwater-lake/lake/silver/orders"
    assert cluster.profile.local_kafka is None


def test_profile_comes_from_the_environment_when_not_given() -> None:
    settings = load_settings(REPO / "conf", environ={"HEADWATER_PROFILE": "cluster"})
    assert settings.profile_name == "cluster"


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"no such profile 'prod'; choose one of cluster, local, local-cluster"
    ):
        load_settings(REPO / "conf", "prod", environ={})


def test_invalid_yaml_names_file_and_line(conf: Path) -> None:
    (conf / "pipeline.yaml").write_text("sources:\n  - topic: a\n   kind: [\n")
    with pytest.raises(ConfigError) as err:
        load_settings(conf, "local", environ={})
    assert str(conf / "pipeline.yaml") in str(err.value)
    assert "not valid YAML at line 3" in str(err.value)


def test_unknown_field_is_named(conf: Path) -> None:
    text = (conf / "pipeline.yaml").read_text().replace("trigger_interval:", "trigger_intervall:")
    (conf / "pipeline.yaml").write_text(text)
    with pytest.raises(
        ConfigError, match=r"field 'bronze.trigger_intervall' is not a known setting"
    ):
        load_settings(conf, "local", environ={})


def test_bad_value_names_field_and_says_what_to_write(conf: Path) -> None:
    text = (
        (conf / "pipeline.yaml")
        .read_text()
        .replace("trigger_interval: 1 second", "trigger_interval: fast")
    )
    (conf / "pipeline.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(conf, "local", environ={})
    message = str(err.value)
    assert message.startswith(str(conf / "pipeline.yaml"))
    assert "field 'bronze.trigger_interval': write an interval like '1 second'" in message


def test_missing_required_field_is_named(conf: Path) -> None:
    text = (
        (conf / "profiles/local.yaml").read_text().replace("bootstrap_servers: 127.0.0.1:9092", "")
    )
    (conf / "profiles/local.yaml").write_text(text)
    with pytest.raises(
        ConfigError, match=r"local.yaml: field 'kafka.bootstrap_servers' is required"
    ):
        load_settings(conf, "local", environ={})


def test_sasl_protocol_without_credentials_is_refused(conf: Path) -> None:
    text = (conf / "profiles/local.yaml").read_text().replace("PLAINTEXT", "SASL_SSL")
    (conf / "profiles/local.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"'kafka': .*needs a 'sasl' block"):
        load_settings(conf, "local", environ={})


def test_two_topics_with_the_same_table_name_are_refused(conf: Path) -> None:
    (conf / "pipeline.yaml").write_text("sources:\n  - topic: a.b\n  - topic: a_b\n")
    with pytest.raises(ConfigError, match=r"same table name: a_b"):
        load_settings(conf, "local", environ={})


def test_missing_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "local.yaml").write_text("{}")
    with pytest.raises(ConfigError, match=r"pipeline.yaml: file not found"):
        load_settings(tmp_path, "local", environ={})


def test_unknown_source_lists_known_ones() -> None:
    settings = load_settings(REPO / "conf", "local", environ={})
    with pytest.raises(ConfigError, match=r"no source 'shop.refunds'.*known: shop.orders"):
        settings.pipeline.source("shop.refunds")
    assert settings.pipeline.source("shop_orders").topic == "shop.orders"


def test_a_profile_extends_another_block_by_block(conf: Path) -> None:
    (conf / "profiles" / "team.yaml").write_text(
        "extends: cluster\n"
        "spark: {shuffle_partitions: 8}\n"
        "kafka: {bootstrap_servers: 'k1:9094,k2:9094'}\n"
        "lake: {root: 'file:///data/lake'}\n"
        "dagster_storage: null\n"
    )
    (conf / "profiles" / "team-dev.yaml").write_text("extends: team\nspark: {master: 'local[2]'}\n")
    team = load_settings(conf, "team-dev", environ={}).profile
    assert team.spark.master == "local[2]" and team.spark.shuffle_partitions == 8
    assert team.spark.fork_free_local_fs is False, "kept from cluster"
    assert team.kafka.bootstrap_servers == "k1:9094,k2:9094"
    assert team.kafka.security_protocol == "SASL_SSL" and team.kafka.replication_factor == 3
    assert team.lake.root == "file:///data/lake"
    assert team.lake.checkpoints == "s3a://headwater-lake/checkpoints"
    assert team.dagster_storage is None, "null replaces the base's block"


def test_a_bad_base_profile_is_named(conf: Path) -> None:
    (conf / "profiles" / "a.yaml").write_text("extends: nowhere\n")
    with pytest.raises(ConfigError, match=r"a.yaml: extends 'nowhere', which is not a profile"):
        load_settings(conf, "a", environ={})
    (conf / "profiles" / "a.yaml").write_text("extends: b\n")
    (conf / "profiles" / "b.yaml").write_text("extends: a\n")
    with pytest.raises(ConfigError, match=r"in a circle \(b -> a -> b\)"):
        load_settings(conf, "b", environ={})
    (conf / "profiles" / "b.yaml").write_text("extends: cluster\nkafka: {replication: 3}\n")
    with pytest.raises(ConfigError, match=r"b.yaml: field 'kafka.replication'"):
        load_settings(conf, "b", environ={})


def test_topology_defaults_to_fused_and_a_layer_per_application_needs_layered(conf: Path) -> None:
    assert load_settings(conf, "local", environ={}).pipeline.topology == "fused"
    text = (conf / "pipeline.yaml").read_text()
    (conf / "pipeline.yaml").write_text(
        text.replace("mode: single_application", "mode: application_per_layer")
    )
    with pytest.raises(ConfigError, match="needs topology: layered"):
        load_settings(conf, "local", environ={})
    (conf / "pipeline.yaml").write_text(
        text.replace("mode: single_application", "mode: application_per_layer").replace(
            "topology: fused", "topology: layered"
        )
    )
    assert load_settings(conf, "local", environ={}).pipeline.topology == "layered"
    (conf / "pipeline.yaml").write_text(text.replace("topology: fused", "topology: both"))
    with pytest.raises(ConfigError, match="topology"):
        load_settings(conf, "local", environ={})


@pytest.mark.parametrize(
    ("setting", "bad"),
    [
        ('micro_batch_cron: "* * * * *"', 'micro_batch_cron: "61 * * * *"'),
        ('cron: "0 * * * *"', 'cron: "0 25 * * *"'),
    ],
)
def test_every_cron_of_conf_meets_the_same_rule(conf: Path, setting: str, bad: str) -> None:
    """One Cron type: the micro-batch schedule's cron is held to the maintenance cron's rule
    (a minute past 59 or an hour past 23 is refused, naming the field)."""
    text = (conf / "pipeline.yaml").read_text()
    assert setting in text
    (conf / "pipeline.yaml").write_text(text.replace(setting, bad))
    with pytest.raises(ConfigError) as err:
        load_settings(conf, "local", environ={})
    assert "write a cron expression of five fields (minute hour day month weekday)" in str(
        err.value
    )
