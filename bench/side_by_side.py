"""What the benchmarks that compare variants of one load share: their options, the interleaved repetitions, the
result file and the table of medians (bench.grpc, bench.tracing)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# The figures of one load at one client count: requests_per_s, p50_ms and p99_ms at least.
Figures = dict[str, float]
Runs = dict[str, dict[int, list[Figures]]]


def median_ms(function: Callable[[], object], repeat: int = 7, warm_up: int = 0) -> float:
    """The median of ``repeat`` timed calls of ``function``, in ms, after ``warm_up`` untimed ones."""
    for _ in range(warm_up):
        function()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def arguments(description: str, out: str) -> argparse.Namespace:
    """--model, --seconds, --reps, --clients (as a list) and --out, defaulting to bench/results/OUT."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", type=Path, default=ROOT / "models/resnet50.onnx")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results" / out)
    args = parser.parse_args()
    args.clients = [int(count) for count in args.clients.split(",")]
    return args


def interleave(
    variants: Sequence[str], clients: Sequence[int], reps: int, measure: Callable[[str, int], Figures]
) -> Runs:
    """``measure(variant, clients)`` for every variant at every client count, ``reps`` times, the variants' order
    turning between repetitions so that a drifting machine favours none of them."""
    runs: Runs = {variant: {count: [] for count in clients} for variant in variants}
    width = max(len(variant) for variant in variants) + 1
    for rep in range(reps):
        for count in clients:
            for variant in variants if rep % 2 == 0 else tuple(reversed(variants)):
                figures = measure(variant, count)
                runs[variant][count].append(figures)
                print(
                    f"  rep {rep + 1} c={count:<2} {variant:<{width}} {figures['requests_per_s']:7.1f} req/s  "
                    f"p50 {figures['p50_ms']:6.1f} ms",
                    flush=True,
                )
    return runs


def save(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


def medians_table(result: dict[str, Any], heading: str, cpu: Callable[[Figures], float] | None = None) -> str:
    """The medians of each variant at each client count, as docs/performance.md shows them; with ``cpu``, a last
    column of the load generator's CPU per request."""
    columns = [heading, "clients", "requests/s", "p50 ms", "p99 ms"] + (["client CPU per request"] if cpu else [])
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for variant, by_clients in result["runs"].items():
        for count, figures in by_clients.items():
            med = {key: statistics.median(f[key] for f in figures) for key in ("requests_per_s", "p50_ms", "p99_ms")}
            cells = [variant, count, f"{med['requests_per_s']:.1f}", f"{med['p50_ms']:.1f}", f"{med['p99_ms']:.1f}"]
            if cpu is not None:
                cells.append(f"{statistics.median(cpu(f) for f in figures):.2f} ms")
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)
