"""The engines behind the session headwater builds, end to end on real files: a Delta table
written and read back, and a Great Expectations validation of a Spark DataFrame. Each is
seconds of first-use class loading and planning in a JVM, so they sit outside the fast unit
tier."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from streaming.delta_log import DeltaLogError, live_files, live_rows
from streaming.quality.expectations import ExpectationSpec, validate

pytestmark = pytest.mark.integration


def test_delta_round_trip(spark: SparkSession, tmp_path: Path) -> None:
    spark.range(3).write.format("delta").save(str(tmp_path / "t"))
    rows = spark.read.format("delta").load(str(tmp_path / "t")).collect()
    assert sorted(r.id for r in rows) == [0, 1, 2]


@pytest.mark.parametrize("deletion_vectors", [False, True])
def test_live_rows_from_the_log_agree_with_spark_through_appends_deletes_and_merges(
    spark: SparkSession, tmp_path: Path, deletion_vectors: bool
) -> None:
    from delta.tables import DeltaTable

    path = str(tmp_path / "t")
    assert live_rows(path) is None
    (
        spark.range(100)
        .repartition(4)
        .write.format("delta")
        .option("delta.enableDeletionVectors", str(deletion_vectors).lower())
        .save(path)
    )
    spark.range(100, 130).write.format("delta").mode("append").save(f"file:{path}")
    counts = [(live_rows(path), spark.read.format("delta").load(path).count())]
    table = DeltaTable.forPath(spark, path)
    table.delete("id % 7 = 0")
    counts.append((live_rows(f"file://{path}"), table.toDF().count()))
    (
        table.alias("t")
        .merge(spark.range(120, 160).alias("s"), "t.id = s.id")
        .whenMatchedDelete()
        .whenNotMatchedInsertAll()
        .execute()
    )
    counts.append((live_rows(path), table.toDF().count()))
    # 19 multiples of 7 below 130 deleted; the merge deletes 120..129 but 126 (9) and adds
    # 126 and 130..159 (31).
    assert counts == [(130, 130), (111, 111), (133, 133)]
    with pytest.raises(DeltaLogError, match="not on local disk"):
        live_rows("s3a://lake/t")


@pytest.mark.parametrize("deletion_vectors", [False, True])
def test_the_log_reader_starts_from_the_latest_checkpoint_and_survives_log_cleanup(
    spark: SparkSession, tmp_path: Path, deletion_vectors: bool
) -> None:
    from delta.tables import DeltaTable

    path = str(tmp_path / "t")
    (
        spark.range(40)
        .repartition(4)
        .write.format("delta")
        .option("delta.enableDeletionVectors", str(deletion_vectors).lower())
        .save(path)
    )
    for n in range(1, 12):  # versions 1-11: Delta checkpoints at version 10
        spark.range(40 + 5 * n, 45 + 5 * n).write.format("delta").mode("append").save(path)
    table = DeltaTable.forPath(spark, path)
    table.delete("id % 3 = 0")  # after the checkpoint: removes (or vectors) of its files
    log = tmp_path / "t" / "_delta_log"
    assert (log / f"{10:020d}.checkpoint.parquet").is_file()

    def spark_figures() -> tuple[int, int]:
        detail = table.detail().first()
        assert detail is not None
        return table.toDF().count(), int(detail.numFiles)

    # 95 ids (0..39, then 45..99), less the 33 multiples of 3 among them (14 + 19).
    assert (live_rows(path), live_files(path)) == spark_figures() and live_rows(path) == 62
    # Delta's log cleanup deletes the commits before a checkpoint once they expire.
    for version in range(10):
        (log / f"{version:020d}.json").unlink()
    assert (live_rows(path), live_files(path)) == spark_figures()
    (log / "_last_checkpoint").unlink()
    with pytest.raises(DeltaLogError, match="no checkpoint to start from"):
        live_files(path)


def test_local_file_system_keeps_hadoop_permissions_renames_and_links(
    spark: SparkSession, tmp_path: Path
) -> None:
    """headwater's file system (java.nio instead of forked chmod/readlink) behaves as Hadoop's:
    created files and directories get their permissions (umask applied), FileContext renames
    overwrite, links are seen as Hadoop's own sees them."""
    jvm = spark._jvm
    assert jvm is not None
    hadoop = spark._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    fs_api = jvm.org.apache.hadoop.fs
    path = fs_api.Path(f"file://{tmp_path}/a")
    fs = path.getFileSystem(hadoop)
    assert fs.getClass().getName() == "io.headwater.fs.NioLocalFileSystem"
    out = fs.create(path, True)
    out.write(b"first")
    out.close()
    umask = jvm.org.apache.hadoop.fs.permission.FsPermission.getUMask(hadoop).toShort()
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / ".a.crc").is_file()  # still the checksummed file system
    directory = fs_api.Path(f"file://{tmp_path}/d")
    assert fs.mkdirs(directory, jvm.org.apache.hadoop.fs.permission.FsPermission(0o750))
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750 & ~umask

    context = fs_api.FileContext.getFileContext(hadoop)
    assert context.getDefaultFileSystem().getClass().getName() == "io.headwater.fs.NioLocalFs"
    (tmp_path / "b").write_bytes(b"second")
    overwrite = spark.sparkContext._gateway.new_array(fs_api.Options.Rename, 1)  # type: ignore[union-attr]
    overwrite[0] = fs_api.Options.Rename.OVERWRITE
    context.rename(fs_api.Path(f"file://{tmp_path}/b"), path, overwrite)
    assert (tmp_path / "a").read_bytes() == b"second" and not (tmp_path / "b").exists()
    # Links are seen as Hadoop's own local file system sees them.
    (tmp_path / "link").symlink_to(tmp_path / "a")
    stock = fs_api.RawLocalFileSystem()
    stock.initialize(path.toUri(), hadoop)
    for name in ("link", "a"):
        where = fs_api.Path(f"file://{tmp_path}/{name}")
        ours, theirs = context.getFileLinkStatus(where), stock.getFileLinkStatus(where)
        assert (ours.isSymlink(), ours.getLen(), ours.isFile()) == (
            theirs.isSymlink(),
            theirs.getLen(),
            theirs.isFile(),
        )


def test_validate_reports_each_expectation_with_its_bad_values(spark: SparkSession) -> None:
    rows = [
        (f"id-{i}", "EUR" if i % 10 else "XXX", float(i - 2), f"id-{i % 25}") for i in range(30)
    ]
    frame = spark.createDataFrame(
        rows, "event_id string, currency string, amount double, ref string"
    )
    specs = [
        ExpectationSpec("event_id.unique", "event_id", "unique"),
        ExpectationSpec("currency.enum", "currency", "in_set", {"value_set": ("EUR", "USD")}),
        ExpectationSpec("amount.minimum", "amount", "between", {"min_value": 0.0}, "warn"),
        ExpectationSpec("ref.unique", "ref", "unique"),
        ExpectationSpec("coupon.required", "coupon", "not_null"),
    ]
    unique, enum, minimum, ref, missing = validate(frame, specs)
    assert (unique.spec, unique.success, unique.element_count, unique.unexpected_count) == (
        specs[0],
        True,
        30,
        0,
    )
    # i = 0, 10, 20 carry XXX; amounts -2 and -1 break the minimum.
    assert (enum.success, enum.unexpected_count, enum.unexpected_sample) == (
        False,
        3,
        ("XXX", "XXX", "XXX"),
    )
    assert (minimum.success, minimum.unexpected_count, sorted(minimum.unexpected_sample)) == (
        False,
        2,
        [-2.0, -1.0],
    )
    assert minimum.spec.criticality == "warn"
    # ids 0-4 occur twice each: 10 rows are not unique.
    assert (ref.success, ref.unexpected_count) == (False, 10)
    assert sorted(set(ref.unexpected_sample)) == [f"id-{i}" for i in range(5)]
    assert not missing.success and missing.exception is not None and "coupon" in missing.exception
