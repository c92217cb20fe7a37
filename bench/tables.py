"""The tables of docs/performance.md, as Markdown, from bench/results/*.json.

    .venv/bin/python -m bench.tables [--results bench/results]

Run it after `make bench`, `make bench-path`, `make bench-flood`, `python -m bench.grpc` and `python -m
bench.tracing`, and paste its output
over the page's tables, so that every figure there comes from the result files, with their commit, time and
machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.grpc import table as grpc_table
from bench.path import median_row
from bench.tracing import table as tracing_table

ROOT = Path(__file__).resolve().parents[1]


def _clients(count: int) -> str:
    return f"{count} client" + ("s" if count > 1 else "")


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _table(header: list[str], rows: list[list[object]]) -> str:
    return "\n".join([_row(header), _row(["---"] * len(header)), *(_row(row) for row in rows)])


def run_line(result: dict) -> str:
    cpu = result["cpu"]
    return (
        f"commit {result['commit']}, {result['measured_at'][:16].replace('T', ' ')} UTC, {cpu['model']} "
        f"({cpu['cpus']} CPUs; {', '.join(cpu['flags'])})"
    )


def bench_tables(result: dict) -> str:
    raw = result["raw_onnxruntime"]
    best = max(row["images_per_s"] for row in raw)
    batch1 = max((row for row in raw if row["batch"] == 1), key=lambda row: row["images_per_s"])
    parts = [f"`make bench`: {run_line(result)}, {result['seconds_per_point']:.0f} s per point, one run."]
    parts.append(
        f"Raw ONNX Runtime on the same model: best {best:.1f} images/s; batch 1 {batch1['images_per_s']:.1f} "
        f"images/s, p50 {batch1['p50_ms']:.1f} ms."
    )
    for name, rows in result["service"]["curves"].items():
        header = [f"{name}, through nginx", *(_clients(row["clients"]) for row in rows)]
        table = [
            ["images/s", *(f"{row['images_per_s']:.1f}" for row in rows)],
            ["× raw best", *(f"{row['images_per_s'] / best:.2f}" for row in rows)],
            ["p50 ms", *(f"{row['p50_ms']:.0f}" for row in rows)],
            ["p99 ms", *(f"{row['p99_ms']:.0f}" for row in rows)],
            ["503 answers", *(str(row["non_2xx"]) for row in rows)],
        ]
        parts.append(_table(header, table))
    cold = result["cold_start"]
    parts.append(
        f"Cold start (process start to ready, model in the page cache): median {cold['cold_start_s_median']:.2f} s of "
        f"{len(cold['cold_start_s'])}. RSS: {cold['rss_mb_ready']:.0f} MB ready, "
        f"{result['service']['rss_mb_after_load']:.0f} MB after the whole run, 12 MP uploads included."
    )
    if result.get("int8_service"):
        rows = result["int8_service"]["curves"]["typical 451x300"]
        shown = "; ".join(
            f"{_clients(r['clients'])}: {r['images_per_s']:.1f} images/s, p50 {r['p50_ms']:.0f} ms" for r in rows
        )
        parts.append(f"INT8 model, typical photo through nginx: {shown}.")
    return "\n\n".join(parts)


def path_tables(result: dict) -> str:
    parts = [
        f"`make bench-path`: {run_line(result)}, {result['seconds']:.0f} s per wrk run, medians of "
        f"{result['reps']} interleaved repetitions."
    ]
    raw = result.get("raw_onnxruntime", {})
    for label in ("null model", "fp32 ResNet-50", "INT8 ResNet-50"):
        if label not in result:
            continue
        best = max(raw[label].values()) if label in raw else None
        title = f"**{label}**"
        if best:
            title += ": raw ONNX Runtime " + ", ".join(f"{v:.1f} images/s at {k}" for k, v in raw[label].items())
        header = ["server", "connections", "requests/s", "p50 ms", "p99 ms", "CPU per request"]
        header += ["× raw best"] if best else []
        rows = []
        for name, by_clients in result[label].items():
            for clients, figures in by_clients.items():
                row = median_row(figures)
                cells: list[object] = [name, clients, f"{row['requests_per_s']:.1f}", f"{row['p50_ms']:.1f}"]
                cells += [f"{row['p99_ms']:.1f}", f"{row['server_cpu_ms_per_request']:.1f} ms"]
                cells += [f"{row['requests_per_s'] / best:.2f}×"] if best else []
                rows.append(cells)
        parts += [title, _table(header, rows)]
    profile = result["profile"]
    per_request = profile["cpu_ms_per_request"]
    rows = [
        [stage, f"{100 * share:.1f}%", f"{share * per_request:.2f} ms"] for stage, share in profile["shares"].items()
    ]
    parts.append(
        f"Where the service's CPU goes, null model at 8 connections (py-spy, {profile['samples']} samples, "
        f"{per_request:.2f} ms of CPU per request in all):"
    )
    parts.append(_table(["stage", "share of the samples", "CPU per request"], rows))
    gil = profile.get("gil_ms_per_request")
    if gil:
        parts.append(
            f"Some thread held the GIL for {gil:.2f} ms of each request: one process cannot pass about "
            f"{1000 / gil:.0f} requests/s however many cores it has."
        )
    return "\n\n".join(parts)


def flood_table(result: dict) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in result["settings"].items()) or "default settings"
    header = ["target", "flood from", "goodput", "unloaded", "ratio", "p99, all answers", "connection errors"]
    header.append("answers")
    rows = []
    for run in result["runs"]:
        answers = ", ".join(f"{count} × {status}" for status, count in sorted(run["statuses"].items()))
        rows.append(
            [
                run["target"],
                run["source"],
                f"{run['goodput']:.1f}/s",
                f"{run['unloaded']:.1f}/s",
                f"{run['ratio']:.2f}×",
                f"{run['p99_all_ms'] / 1000:.2f} s",
                run["errors"],
                answers,
            ]
        )
    return f"{run_line(result)}; {settings}.\n\n" + _table(header, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()
    read = {name: json.loads((args.results / f"{name}.json").read_text()) for name in ("bench", "path", "flood")}
    print(bench_tables(read["bench"]), end="\n\n")
    print(path_tables(read["path"]), end="\n\n")
    print(flood_table(read["flood"]), end="\n\n")
    no_wait = args.results / "flood-no-wait.json"
    if no_wait.exists():
        print(flood_table(json.loads(no_wait.read_text())), end="\n\n")
    for name, table in (
        ("grpc", grpc_table),
        ("grpc-null", grpc_table),
        ("tracing", tracing_table),
        ("tracing-null", tracing_table),
    ):
        path = args.results / f"{name}.json"
        if path.exists():
            result = json.loads(path.read_text())
            print(f"{run_line(result)}\n\n{table(result)}", end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
