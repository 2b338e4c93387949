"""The benchmark's results as files: JSON (every figure and the machine), a Markdown table and
PNG plots. Ratios, not absolute times, carry the verdict."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

LAYERS = ("bronze", "silver", "gold")
FLOOR_LINES = {"floor": "--", "fused": ":"}  # the floors' lines in the freshness plot


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 3)


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    """The ratios and the p99 freshness per layer, from the sides run."""
    sides = results["sides"]

    def rate(side: str) -> float | None:
        found = sides.get(side, {}).get("throughput_rps")
        return None if found is None else float(found)

    def p99(side: str, layer: str) -> float | None:
        found = sides.get(side, {}).get("freshness_s", {}).get(layer, {}).get("p99")
        return None if found is None or math.isnan(found) else float(found)

    baseline = rate("baseline")
    return {
        "bronze_vs_baseline": _ratio(rate("bronze"), baseline),
        "chain_vs_baseline": _ratio(rate("chain"), baseline),
        "baseline_vs_limit": _ratio(baseline, results.get("limit", {}).get("throughput_rps")),
        "freshness_p99_s": {
            "bronze": p99("bronze", "bronze"),
            "silver": p99("chain", "silver"),
            "gold": p99("chain", "gold"),
        },
        # The floor: what Spark and Delta alone cost a three-hop chain here (bench/floor.py).
        "floor_vs_baseline": _ratio(rate("floor"), baseline),
        "chain_vs_floor": _ratio(rate("chain"), rate("floor")),
        "floor_freshness_p99_s": {layer: p99("floor", layer) for layer in LAYERS},
        # The fused floor: the same writes in one query's batch, the yardstick of the fused
        # topology (issue 23's targets: silver <= 1.2x, gold <= 1.5x, throughput >= 0.9x).
        "chain_vs_fused_freshness_p99": {
            layer: _ratio(p99("chain", layer), p99("fused", layer)) for layer in LAYERS
        },
        "chain_vs_fused_throughput": _ratio(rate("chain"), rate("fused")),
        "restart_to_gold_s": results.get("restart", {}).get("restart_to_gold_s"),
        "fixed_rate_below_baseline": (None if not baseline else results["plan"]["rate"] < baseline),
    }


def markdown(results: dict[str, Any]) -> str:
    plan, machine = results["plan"], results["machine"]
    lines = [
        f"Benchmark {results['started']} ({results['mode']}, commit {machine['commit']}): "
        f"{machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu']}; "
        f"pyspark {machine['pyspark']}, delta-spark {machine['delta_spark']}. "
        f"Backlog {plan['backlog']} order events over {plan['partitions']} partitions; "
        f"freshness at {plan['rate']:g} events/s for {plan['seconds']:g} s.",
        "",
        "| side | throughput (events/s) | freshness p50 / p95 / p99 (s) | CPU-s per M events "
        "| driver peak RSS (MiB) | files at end |",
        "|---|---|---|---|---|---|",
    ]
    limit = results.get("limit")
    if limit:
        lines.append(f"| limit (one Kafka consumer) | {limit['throughput_rps']:.0f} | | | | |")
    for side, f in results["sides"].items():
        fresh = "; ".join(
            f"{layer} {v['p50']:.2f} / {v['p95']:.2f} / {v['p99']:.2f}"
            for layer, v in f["freshness_s"].items()
        )
        files = ", ".join(f"{t} {n}" for t, n in f["files_at_end"].items())
        if not f.get("kept_up", True):
            fresh += " (did not keep up: lag grew, rows still missing are left out)"
        lines.append(
            f"| {side} | {f['throughput_rps']:.0f} | {fresh} | {f['cpu_s_per_million']:.0f} "
            f"| {f['driver_peak_rss_mib']:.0f} | {files} |"
        )
    p99 = results["freshness_p99_s"]
    lines += [
        "",
        "| ratio | value |",
        "|---|---|",
        f"| bronze / baseline throughput | {results['bronze_vs_baseline']} |",
        f"| full chain / baseline throughput | {results['chain_vs_baseline']} |",
        f"| baseline / limit throughput | {results['baseline_vs_limit']} |",
        f"| freshness p99 bronze / silver / gold (s) | {p99['bronze']} / {p99['silver']} / "
        f"{p99['gold']} |",
    ]
    if "floor" in results["sides"]:
        floor = results["floor_freshness_p99_s"]
        lines += [
            f"| floor / baseline throughput | {results['floor_vs_baseline']} |",
            f"| full chain / floor throughput | {results['chain_vs_floor']} |",
            "| floor freshness p99 bronze / silver / gold (s) | "
            + " / ".join(str(floor[layer]) for layer in LAYERS)
            + " |",
        ]
    lines += ["", *batch_table(results["sides"])]
    growth = results.get("growth")
    if growth:
        lines += [
            "",
            "| partitions | baseline (events/s) | bronze (events/s) |",
            "|---|---|---|",
            *(
                f"| {g['partitions']} | {g['baseline']:.0f} | {g['bronze']:.0f} |"
                for g in growth["throughput_by_partitions"]
            ),
            "",
            "| input rate (events/s) | chain freshness p99 bronze / silver / gold (s) | kept up |",
            "|---|---|---|",
            *(
                f"| {g['rate']:g} | "
                + " / ".join(f"{g['freshness_s'][layer]['p99']:.2f}" for layer in LAYERS)
                + f" | {'yes' if g['kept_up'] else 'no'} |"
                for g in growth["freshness_by_rate"]
            ),
        ]
    return "\n".join(lines) + "\n"


BATCH_PARTS = ("triggerExecution", "latestOffset", "queryPlanning", "addBatch", "walCommit")


def batch_table(sides: dict[str, Any]) -> list[str]:
    """Per query, the median durationMs of each part of a batch at the fixed rate and of a
    trigger at idle (Spark's progress), as Markdown rows."""
    lines = [
        "| side: query | at | " + " | ".join(BATCH_PARTS) + " (ms) |",
        "|---|---|" + "---|" * len(BATCH_PARTS),
    ]
    for side, f in sides.items():
        for at, key in (("fixed rate", "batch_ms_at_fixed_rate"), ("idle", "batch_ms_at_idle")):
            for query, parts in f.get(key, {}).items():
                cells = " | ".join(f"{parts[p]:.0f}" if p in parts else "" for p in BATCH_PARTS)
                lines.append(f"| {side}: {query} | {at} | {cells} |")
    return lines


def plots(results: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for side, f in results["sides"].items():
        for layer, v in f["freshness_s"].items():
            layered = len(f["freshness_s"]) > 1  # a chain: one line per layer
            if layered or layer == side:
                label = f"{side}: {layer}" if layered else side
                ax.plot(v["cdf"], range(101), label=label, linestyle=FLOOR_LINES.get(side, "-"))
    ax.set_xlabel("Kafka timestamp to visible in the table (s)")
    ax.set_ylabel("percentile")
    ax.set_title(f"Freshness at {results['plan']['rate']:g} events/s")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(_save(fig, folder / f"{stem}-freshness.png"))
    fig, ax = plt.subplots(figsize=(7, 4))
    for side, f in results["sides"].items():
        points = f["throughput_over_time"]
        total, xs, ys = 0, [], []
        for t, rows in points:
            total += rows
            xs.append(t)
            ys.append(total)
        ax.plot(xs, ys, marker=".", label=f"{side} ({f['throughput_rps']:.0f}/s)")
    ax.set_xlabel("seconds since the first commit")
    ax.set_ylabel("backlog records in the entry table")
    ax.set_title("Working off the backlog")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(_save(fig, folder / f"{stem}-throughput.png"))
    growth = results.get("growth")
    if growth:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        rows = growth["throughput_by_partitions"]
        for side in ("baseline", "bronze"):
            left.plot([g["partitions"] for g in rows], [g[side] for g in rows], "o-", label=side)
        left.set_xlabel("topic partitions")
        left.set_ylabel("throughput (events/s)")
        left.set_xscale("log", base=2)
        left.legend()
        left.grid(alpha=0.3)
        rates = growth["freshness_by_rate"]
        for layer in LAYERS:
            right.plot(
                [g["rate"] for g in rates],
                [g["freshness_s"][layer]["p99"] for g in rates],
                "o-",
                label=f"{layer} p99",
            )
        right.set_xlabel("input rate (events/s)")
        right.set_ylabel("freshness p99 (s)")
        right.legend()
        right.grid(alpha=0.3)
        written.append(_save(fig, folder / f"{stem}-growth.png"))
    plt.close("all")
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_results(
    results: dict[str, Any], table: str, folder: Path, started: datetime, prefix: str = ""
) -> list[Path]:
    """<prefix><time>.json and <prefix>latest.json (the same figures) and <prefix>latest.md
    (`table`) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1)
    paths = [
        folder / f"{prefix}{started.strftime('%Y%m%dT%H%M%SZ')}.json",
        folder / f"{prefix}latest.json",
    ]
    for path in paths:
        path.write_text(text)
    markdown_file = folder / f"{prefix}latest.md"
    markdown_file.write_text(table)
    return [*paths, markdown_file]


def write(results: dict[str, Any], folder: Path, started: datetime) -> list[Path]:
    """<time>.json, latest.json, latest.md and the plots (latest-*.png) in `folder`."""
    written = write_results(results, markdown(results), folder, started)
    return [*written, *plots(results, folder, "latest")]
