"""`headwater`: run the pipeline of conf/ and the local platform around it.

Each command's own help says what it does (`headwater COMMAND --help`); the list below is
argparse's, from the parser itself, so it cannot fall behind the commands.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime

from streaming.config import Settings, load_settings
from streaming.errors import ConfigError, HeadwaterError
from streaming.jobs.common import add_conf_arguments, configure_logging, stop_on_signals

DEMO_SECONDS_ENV = "DEMO_SECONDS"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headwater", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_conf_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "up",
        help="start the profile's local services (Kafka; PostgreSQL and Kafka Connect with "
        "Debezium when configured), create the topics, register the connectors; idempotent",
    )
    commands.add_parser("down", help="stop the local services `up` started")
    commands.add_parser("status", help="is each local service running and answering")
    cluster = commands.add_parser(
        "cluster",
        help="the Spark standalone cluster of the profile's local_spark_cluster on 127.0.0.1: "
        "`cluster up|down|status`",
    )
    cluster_actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    cluster_actions.add_parser(
        "up", help="start the master and workers (idempotent); print the spark-submit command"
    )
    cluster_actions.add_parser("down", help="stop the workers and the master")
    cluster_actions.add_parser("status", help="is the master up, with every worker ALIVE")
    commands.add_parser(
        "check", help="check Java, the jars and that their versions agree with pyspark/delta-spark"
    )

    commands.add_parser(
        "jvm-archive",
        help="record the Spark driver's class-data-sharing archive (make setup does): Spark "
        "starts in about half the time",
    )

    generate = commands.add_parser(
        "generate", help="produce the demo shop's orders and payments to Kafka"
    )
    generate.add_argument(
        "--rate", type=float, default=None, help="records per second (default: as fast as possible)"
    )
    generate.add_argument("--count", type=int, default=None, help="stop after this many records")
    generate.add_argument(
        "--seconds", type=float, default=None, help="stop after this many seconds"
    )
    generate.add_argument(
        "--seed", type=int, default=None, help="same seed, start time and rate: same records"
    )
    generate.add_argument(
        "--start-time", default=None, help="event time of the first record, ISO-8601 (default: now)"
    )
    generate.add_argument(
        "--faults",
        default="none",
        help="'all', 'none', or a list like 'duplicates,malformed=0.05': duplicates, late, "
        "out_of_order, malformed, violations, v2, null_values, unknown_version",
    )
    generate.add_argument("--no-progress", action="store_true", help="no progress line")
    generate.add_argument(
        "--customers",
        action="store_true",
        help="Debezium change events of public.customers instead of orders and payments "
        "(faults: duplicates, out_of_order)",
    )

    stream = commands.add_parser(
        "stream", help="run the streams of one layer or all: `stream bronze|silver|gold|all`"
    )
    layers = stream.add_subparsers(dest="layer", required=True, metavar="LAYER")
    for layer, what in (
        ("bronze", "Kafka topics -> bronze Delta tables"),
        ("silver", "bronze -> silver, quarantine and duplicates (event topics with a contract)"),
        ("gold", "silver -> gold tables of conf/gold/"),
        ("all", "every layer in one Spark application"),
    ):
        command = layers.add_parser(layer, help=what)
        command.add_argument(
            "--topic",
            action="append",
            default=[],
            help="source topic or table (repeatable; default: all)",
        )
        command.add_argument("--available-now", action="store_true", help="catch up, then stop")

    contracts = commands.add_parser("contracts", help="the data contracts: `contracts check`")
    contract_commands = contracts.add_subparsers(dest="action", required=True, metavar="ACTION")
    contract_commands.add_parser(
        "check",
        help="every contract loads, compiles, and each version is compatible with the one before",
    )

    bench = commands.add_parser(
        "bench",
        help="the benchmark (bench/): the limit, the floors and headwater's chain in one run, "
        "results in bench/results/ (`bench --help` for options)",
        add_help=False,
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)

    run = commands.add_parser(
        "run", help="the whole pipeline, deployed as conf/pipeline.yaml's deployment.mode says"
    )
    run.add_argument("--available-now", action="store_true", help="catch every layer up, then stop")

    commands.add_parser(
        "reconcile",
        help="per topic: Kafka = bronze = silver + quarantine + duplicates; per gold table: equal to its definition",
    )

    replay = commands.add_parser(
        "replay",
        help="re-read a Kafka topic into bronze; records bronze holds are not written again",
    )
    replay.add_argument("--topic", required=True, help="source topic or table")
    start = replay.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--from-timestamp", help="ISO-8601; per partition, the first record at or after it"
    )
    start.add_argument(
        "--from-offsets",
        help='JSON offsets per partition, e.g. \'{"0": 10, "1": 0}\' (others: not replayed)',
    )
    replay.add_argument(
        "--until-offsets",
        default=None,
        help="JSON offsets per partition to stop before (default: the end)",
    )

    demo = commands.add_parser(
        "demo",
        help="the whole demo in the foreground: the local services (Kafka; PostgreSQL and "
        "Kafka Connect with Debezium when configured), the shop's generators, every stream "
        "(bronze, silver, gold) and the Dagster UI; Ctrl-C stops what it started",
    )
    demo.add_argument(
        "--seconds",
        type=float,
        default=None,
        help=f"stop after this many seconds (default: ${DEMO_SECONDS_ENV} or until Ctrl-C)",
    )
    demo.add_argument("--rate", type=float, default=200.0, help="generated records per second")
    demo.add_argument(
        "--faults", default="all", help="faults the generator injects (see generate --faults)"
    )
    demo.add_argument(
        "--no-ui", action="store_true", help="do not start the Dagster UI (dagster dev)"
    )
    _describe(commands)
    return parser


def _describe(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Each command's `--help` opens with the line `headwater --help` lists for it."""
    for action in commands._choices_actions:
        command = commands.choices[action.dest]
        if command.description is None:
            command.description = action.help
        for nested in command._subparsers._group_actions if command._subparsers else ():
            if isinstance(nested, argparse._SubParsersAction):
                _describe(nested)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = [*extra, *args.bench_args]  # the harness parses its own options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(args.verbose)
    try:
        settings = load_settings(args.conf, args.profile)
        return _COMMANDS[args.command](settings, args)
    except HeadwaterError as exc:
        print(f"headwater: {exc}", file=sys.stderr)
        return 2


def _up(settings: Settings, _args: argparse.Namespace) -> int:
    from devstack.services.local import up

    for line in up(settings):
        print(line)
    return 0


def _down(settings: Settings, _args: argparse.Namespace) -> int:
    from devstack.services.local import down

    for line in down(settings):
        print(line)
    return 0


def _status(settings: Settings, _args: argparse.Namespace) -> int:
    from devstack.services.local import status

    healthy, lines = status(settings)
    for line in lines:
        print(line)
    print(f"lake: {settings.table_path('', '').rstrip('/')}")
    return 0 if healthy else 1


def _cluster(settings: Settings, args: argparse.Namespace) -> int:
    """The profile's local clusters: Kafka (local_kafka_cluster) and Spark
    (local_spark_cluster), whichever it has; Kafka starts first and stops last."""
    import shlex

    from devstack.services.kafka_cluster import PASSWORD_ENV, USERNAME_ENV, KafkaCluster
    from devstack.services.spark_cluster import SparkStandalone

    profile = settings.profile
    if profile.local_kafka_cluster is None and profile.local_spark_cluster is None:
        raise ConfigError(
            f"profile '{settings.profile_name}' has neither a local_spark_cluster nor a "
            "local_kafka_cluster block: use --profile local-cluster (both) or add them"
        )
    kafka = KafkaCluster.from_settings(settings) if profile.local_kafka_cluster else None
    spark = SparkStandalone.from_settings(settings) if profile.local_spark_cluster else None
    if args.action == "up":
        if kafka is not None:
            status = kafka.up()
            print("\n".join(status.describe()))
            print(
                f"kafka: SASL_SSL (SCRAM-SHA-512) at {kafka.bootstrap_servers}, CA "
                f"{kafka.certificates.ca_cert}; clients read the user from {USERNAME_ENV} "
                f"({kafka.username}) and the password from {PASSWORD_ENV}, which is the "
                f"'password' in {kafka.credentials_file} (docs/cluster.md)"
            )
        if spark is not None:
            spark_status, started = spark.up()
            print(spark_status.describe() + ("" if started else " (already running)"))
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in spark.submit_env().items())
            command = shlex.join(spark.submit_command(settings, "pipeline", available_now=False))
            print(f"submit the pipeline with:\n  {env} {command}")
        return 0
    if args.action == "down":
        if spark is not None:
            print("spark: stopped" if spark.down() else "spark: was not running")
        if kafka is not None:
            stopped = kafka.down()
            print(f"kafka: stopped nodes {stopped}" if stopped else "kafka: was not running")
        return 0
    healthy = True
    if kafka is not None:
        kafka_status = kafka.status()
        print("\n".join(kafka_status.describe()))
        healthy = healthy and kafka_status.healthy
    if spark is not None:
        spark_state = spark.status()
        print(spark_state.describe())
        healthy = healthy and spark_state.answering
    return 0 if healthy else 1


def _check(settings: Settings, _args: argparse.Namespace) -> int:
    from pathlib import Path

    from streaming.versions import broker_classpath, java_major_version, require_java, spark_jars

    java = require_java()
    major = java_major_version(java)
    if major < 17:
        raise HeadwaterError(f"{java} is Java {major}; Spark 4 and Kafka 4 need Java 17 or newer")
    jars = spark_jars(Path(settings.resolve(settings.profile.spark.jars_dir)))
    print(f"java: {java} (Java {major})")
    print(
        f"spark jars: Delta {jars.delta_version} for Spark {jars.delta_spark_line}, Kafka connector {jars.kafka_connector_version}: agree with pyspark and delta-spark"
    )
    if settings.profile.local_kafka is not None:
        broker_classpath(Path(settings.resolve(settings.profile.local_kafka.jars_dir)))
        print("kafka broker jars: present")
    return 0


def _generate(settings: Settings, args: argparse.Namespace) -> int:
    import secrets
    from datetime import UTC

    from devstack.generator.customers import CustomerChanges
    from devstack.generator.producer import produce, stderr_if_tty
    from devstack.generator.shop import FaultRates, Record, ShopSimulator
    from streaming.kafka_client import ensure_topics

    try:
        faults = FaultRates.parse(args.faults)
        start = datetime.fromisoformat(args.start_time) if args.start_time else datetime.now(UTC)
    except ValueError as exc:
        raise HeadwaterError(f"generate: {exc}") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    ensure_topics(settings.profile.kafka, settings.pipeline.sources)
    records: Iterable[Record]
    if args.customers:
        records = CustomerChanges(seed, start, rate=args.rate or 20.0, faults=faults)
    else:
        records = ShopSimulator(seed, start, rate=args.rate or 100.0, faults=faults)
    stop = threading.Event()
    stop_on_signals(stop)
    report = produce(
        settings.profile.kafka,
        records,
        rate=args.rate,
        count=args.count,
        seconds=args.seconds,
        stop=stop,
        progress=None if args.no_progress else stderr_if_tty(),
    )
    print(f"generate (seed {seed}): {report.summary()}")
    return 0


def _stream(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.runner import LAYERS, run_streams
    from streaming.session import build_spark_session

    stop = threading.Event()
    spark = build_spark_session(settings)
    stop_on_signals(stop)
    try:
        layers = list(LAYERS) if args.layer == "all" else [args.layer]
        rows = run_streams(
            spark, settings, args.topic, available_now=args.available_now, stop=stop, layers=layers
        )
    finally:
        spark.stop()
    for name, count in sorted(rows.items()):
        print(f"{name}: {count:,} rows ingested")
    return 0


def _contracts(settings: Settings, _args: argparse.Namespace) -> int:
    from streaming.contracts.compat import problems
    from streaming.contracts.spark import silver_schema
    from streaming.silver.streams import event_contract

    failures = 0
    for source in settings.pipeline.sources:
        contract = event_contract(settings, source)
        if contract is None:
            continue
        try:
            found = problems(contract)
            if not found:
                silver_schema(contract)  # versions must also merge into one silver table
        except ValueError as exc:
            found = [f"{contract.topic}: {exc}"]
        versions = ", ".join(f"v{n}" for n in contract.versions)
        if found:
            failures += len(found)
            for problem in found:
                print(f"contracts: {problem}", file=sys.stderr)
        else:
            print(f"contracts: {contract.topic} ({versions}; {contract.compatibility}): ok")
    return 1 if failures else 0


def _run(settings: Settings, args: argparse.Namespace) -> int:
    stop = threading.Event()
    if settings.pipeline.deployment.mode == "application_per_layer":
        from streaming.deploy import run_per_layer

        stop_on_signals(stop)
        run_per_layer(settings, available_now=args.available_now, stop=stop)
        return 0
    from streaming.runner import run_streams
    from streaming.session import build_spark_session

    spark = build_spark_session(settings)
    stop_on_signals(stop)
    try:
        rows = run_streams(spark, settings, available_now=args.available_now, stop=stop)
    finally:
        spark.stop()
    for name, count in sorted(rows.items()):
        print(f"{name}: {count:,} rows read")
    return 0


def _reconcile(settings: Settings, _args: argparse.Namespace) -> int:
    from streaming.kafka_client import broker_answers, end_offsets
    from streaming.reconcile import reconcile
    from streaming.session import build_spark_session

    kafka = None
    if broker_answers(settings.profile.kafka):
        kafka = {
            s.topic: sum(end_offsets(settings.profile.kafka, s.topic).values())
            for s in settings.pipeline.sources
        }
    spark = build_spark_session(settings)
    try:
        result = reconcile(spark, settings, kafka)
    finally:
        spark.stop()
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.replay import parse_offsets, parse_timestamp, replay_topic
    from streaming.session import build_spark_session

    settings.pipeline.source(args.topic)  # an unknown topic stops here, before Spark starts
    start = parse_timestamp(args.from_timestamp) if args.from_timestamp else None
    offsets = parse_offsets(args.from_offsets) if args.from_offsets else None
    until = parse_offsets(args.until_offsets) if args.until_offsets else None
    spark = build_spark_session(settings)
    try:
        report = replay_topic(
            spark,
            settings,
            args.topic,
            from_timestamp=start,
            from_offsets=offsets,
            until_offsets=until,
        )
    finally:
        spark.stop()
    print(report.summary())
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.demo import run_demo
    from devstack.generator.shop import FaultRates

    seconds = args.seconds
    if seconds is None and os.environ.get(DEMO_SECONDS_ENV):
        try:
            seconds = float(os.environ[DEMO_SECONDS_ENV])
        except ValueError:
            raise HeadwaterError(
                f"{DEMO_SECONDS_ENV} must be a number of seconds, got {os.environ[DEMO_SECONDS_ENV]!r}"
            ) from None
    try:
        faults = FaultRates.parse(args.faults)
    except ValueError as exc:
        raise HeadwaterError(f"demo: {exc}") from None
    stop = threading.Event()
    stop_on_signals(stop)  # the demo installs them again once Spark is up
    run_demo(settings, seconds=seconds, rate=args.rate, faults=faults, stop=stop, ui=not args.no_ui)
    return 0


def _jvm_archive(settings: Settings, _args: argparse.Namespace) -> int:
    import time

    from devstack.jvm_archive import build_archive

    started = time.monotonic()
    path = build_archive(settings)
    size = path.stat().st_size / 2**20
    print(f"jvm archive: {path} ({size:.0f} MiB, recorded in {time.monotonic() - started:.0f} s)")
    return 0


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    """The benchmark harness (bench/run.py) in a process of its own: the CLI does not import
    it, and it parses its own options."""
    import subprocess

    conf = ["--conf", str(settings.conf_dir), "--profile", settings.profile_name]
    return subprocess.call([sys.executable, "-m", "bench.run", *conf, *args.bench_args])


_COMMANDS = {
    "bench": _bench,
    "up": _up,
    "down": _down,
    "status": _status,
    "cluster": _cluster,
    "check": _check,
    "jvm-archive": _jvm_archive,
    "generate": _generate,
    "stream": _stream,
    "demo": _demo,
    "contracts": _contracts,
    "reconcile": _reconcile,
    "run": _run,
    "replay": _replay,
}


if __name__ == "__main__":
    sys.exit(main())
