"""spark-submit entry point: compact and clean the lake's tables as conf's maintenance block says.

    spark-submit --jars 'infra/jars/spark/*' streaming/jobs/maintenance.py [--table silver.orders]
        [--results FILE]

Maintains the tables one after another and exits: 0 when all went well, 1 when a table
failed (the others are still maintained), 2 on bad conf. With --results, what was done to each
table is appended to FILE as JSON lines (a MaintenanceResult each, or the table and its error).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from streaming.config import load_settings
from streaming.errors import HeadwaterError
from streaming.jobs.common import configure_logging, job_arguments, log


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_arguments("Compact (OPTIMIZE) and clean (VACUUM, log retention) lake tables.")
    parser.add_argument(
        "--table",
        action="append",
        default=[],
        help="a qualified table name, e.g. silver.orders (repeatable; default: every table)",
    )
    parser.add_argument(
        "--results", help="append what was done to each table to this file, as JSON lines"
    )
    args = parser.parse_args(argv)
    # Imported here so `--help` answers without loading Spark.
    from streaming.maintenance import maintain_table, maintained_tables
    from streaming.session import build_spark_session

    configure_logging()
    try:
        settings = load_settings(args.conf, args.profile)
        tables = maintained_tables(settings, args.table)
        spark = build_spark_session(settings)
    except HeadwaterError as exc:
        print(f"headwater: {exc}", file=sys.stderr)
        return 2
    failed = []

    def record(found: dict[str, Any]) -> None:
        if args.results:
            with open(args.results, "a") as out:
                out.write(json.dumps(found) + "\n")

    try:
        for table in tables:
            try:
                record(asdict(maintain_table(spark, settings, table.qualified)))
            except Exception as exc:  # the other tables still get their maintenance
                log.exception("%s: maintenance failed", table.qualified)
                failed.append(table.qualified)
                record({"table": table.qualified, "error": str(exc).strip().split("\n")[0]})
    finally:
        spark.stop()
    if failed:
        log.error("maintenance failed for %s", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
