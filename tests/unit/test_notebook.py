"""streaming.notebook: a lake's tables by catalog name, their history and paths, the command
lines notebooks print; and the notebooks as committed (no outputs, the helper first)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast

import nbformat
import pytest
from pyspark.sql import SparkSession

import streaming.notebook as notebook
from streaming.config import CONF_ENV, PROFILE_ENV, Settings, load_settings
from streaming.errors import ConfigError
from streaming.notebook import STREAM_PROGRESS, Lake, LakeError, open_lake
from tests.conftest import REPO, write_conf

pytestmark = pytest.mark.unit
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return write_conf(tmp_path, topics=["t.orders", "t.payments", "t.customers"])


def test_tables_by_catalog_name_with_history_and_catalog(
    spark: SparkSession, settings: Settings
) -> None:
    lake = Lake(spark, settings)
    path = lake.path("silver.orders")
    assert path == settings.table_path("silver", "orders")
    for first in (1, 3):
        rows = [(n, f"o{n}") for n in range(first, first + 2)]
        spark.createDataFrame(rows, "n int, order_id string").write.format("delta").mode(
            "append"
        ).save(path)

    assert sorted(r.n for r in lake.table("silver.orders").collect()) == [1, 2, 3, 4]
    history = lake.history("silver.orders").orderBy("version").collect()
    assert [(h.version, h.operation) for h in history] == [(0, "WRITE"), (1, "WRITE")]
    assert [h.version for h in lake.history("silver.orders", limit=1).collect()] == [1]

    catalog = lake.catalog().set_index("table")
    assert (catalog.loc["silver.orders", "version"], catalog.loc["silver.orders", "rows"]) == (1, 4)
    assert catalog.loc["bronze.t_orders"].isna()[["version", "rows"]].all()  # not written yet
    assert STREAM_PROGRESS in catalog.index
    assert {t.qualified for t in lake.tables("quarantine")} == {
        "quarantine.t_orders",
        "quarantine.t_payments",
        "quarantine.t_customers",
    }


def test_a_missing_table_says_what_to_do(spark: SparkSession, settings: Settings) -> None:
    lake = Lake(spark, settings)
    with pytest.raises(LakeError, match=r"gold\.nope in the lake: choose one of bronze\.t_orders"):
        lake.table("gold.nope")
    with pytest.raises(LakeError, match=r"silver\.payments does not exist yet at .*run the"):
        lake.table("silver.payments")
    with pytest.raises(LakeError, match=r"silver\.customers does not exist yet"):
        lake.history("silver.customers")
    with pytest.raises(ConfigError, match=r"<layer>\.<table>"):
        lake.path("orders")


def test_open_lake_takes_conf_and_profile_as_every_command_does(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = settings.conf_dir / "profiles"
    shutil.copy(profiles / "local.yaml", profiles / "other.yaml")
    sessions: list[Settings] = []

    def session(chosen: Settings, *, ui: bool | None = None) -> Any:
        sessions.append(chosen)
        return "a session"

    monkeypatch.setattr(notebook, "build_spark_session", session)
    monkeypatch.setenv(CONF_ENV, str(settings.conf_dir))
    monkeypatch.setenv(PROFILE_ENV, "other")
    lake = open_lake()
    assert (lake.settings.conf_dir, lake.settings.profile_name) == (settings.conf_dir, "other")
    assert lake.spark == "a session" and sessions == [lake.settings]
    assert open_lake(settings.conf_dir, "local").settings.profile_name == "local"


def test_command_lines_name_conf_and_profile_only_when_not_the_defaults(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    offsets = '{"0": 5}'
    lake = Lake(cast(Any, None), settings)
    assert lake.command("replay", "--topic", "t.orders", "--from-offsets", offsets) == (
        f"headwater --conf {settings.conf_dir} replay --topic t.orders --from-offsets "
        """'{"0": 5}'"""
    )
    monkeypatch.chdir(REPO)
    demo = Lake(cast(Any, None), load_settings(REPO / "conf", "local", environ={}))
    assert demo.command("reconcile") == "headwater reconcile"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs_and_open_the_lake_first(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    assert book.metadata.kernelspec.name == "python3"
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert book.cells[0].cell_type == "code"
    assert book.cells[0].source.startswith("from streaming.notebook import ")
    assert "lake.stop()" in code[-1].source, "the last cell stops the Spark session"
    for cell in code:
        assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs"
