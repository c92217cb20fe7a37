"""What traces cost, traces off beside on (every request, and one in ten): `python -m bench.tracing`.

    .venv/bin/python -m bench.tracing --model models/resnet50.onnx [--seconds 10] [--reps 3] [--clients 1,8]

Three servers serve the same model side by side; wrk POSTs the same photo to /predict on each in turn, the order
turning between repetitions. The traced ones send their spans (a request span and four stage spans per image, a
span per batch) to an OTLP/gRPC receiver in this process, on the same machine: one samples every request, the
other one in ten (OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.1). The table gives the
medians; bench/results/tracing.json keeps every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.otlp_receiver import grpc_receiver
from bench.quick import multipart, photo_jpeg, start_server
from bench.run import provenance, wrk

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("traces off", "traces on, every request", "traces on, 1 in 10 sampled")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models/resnet50.onnx")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/tracing.json")
    args = parser.parse_args()
    measured = provenance()
    clients = [int(c) for c in args.clients.split(",")]
    runs: dict[str, dict[int, list[dict[str, float]]]] = {v: {c: [] for c in clients} for v in VARIANTS}
    with grpc_receiver() as receiver, tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "body.bin"
        body.write_bytes(multipart(photo_jpeg()))
        traced = {"RESNET_OTEL_ENDPOINT": receiver.endpoint}
        sampled = {**traced, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
        servers = [start_server(args.model, environment) for environment in ({}, traced, sampled)]
        urls = {variant: url for variant, (_, url, _) in zip(VARIANTS, servers, strict=True)}
        try:
            for rep in range(args.reps):
                for count in clients:
                    for variant in VARIANTS if rep % 2 == 0 else tuple(reversed(VARIANTS)):
                        figures = wrk(urls[variant], body, count, args.seconds)
                        runs[variant][count].append(figures)
                        print(
                            f"  rep {rep + 1} c={count:<2} {variant:<27} {figures['requests_per_s']:7.1f} req/s  "
                            f"p50 {figures['p50_ms']:6.1f} ms",
                            flush=True,
                        )
        finally:
            for process, _, _ in servers:
                process.terminate()
                process.wait(timeout=30)
        received = {"spans": len(receiver.spans), "export_requests": receiver.requests}
    result = {**measured, "model": args.model.name, "seconds": args.seconds, "reps": args.reps}
    result |= {"received": received, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"the receiver took {received['spans']} spans in {received['export_requests']} exports")
    return 0


def table(result: dict) -> str:
    """The medians, as the Markdown table docs/performance.md shows."""
    lines = ["| traces | clients | requests/s | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    for variant, by_clients in result["runs"].items():
        for count, figures in by_clients.items():
            med = {key: statistics.median(f[key] for f in figures) for key in ("requests_per_s", "p50_ms", "p99_ms")}
            lines.append(
                f"| {variant} | {count} | {med['requests_per_s']:.1f} | {med['p50_ms']:.1f} | {med['p99_ms']:.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
