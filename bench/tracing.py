"""What traces cost, traces off beside on (every request, and one in ten): `python -m bench.tracing`.

    .venv/bin/python -m bench.tracing --model models/resnet50.onnx [--seconds 10] [--reps 3] [--clients 1,8]

Three servers serve the same model side by side; wrk POSTs the same photo to /predict on each in turn, the order
turning between repetitions. The traced ones send their spans (a request span and four stage spans per image, a
span per batch) to an OTLP/gRPC receiver in this process, on the same machine: one samples every request, the
other one in ten (OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.1). The table gives the
medians; bench/results/tracing.json keeps every run.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.otlp_receiver import grpc_receiver
from bench.quick import multipart, photo_jpeg, start_server
from bench.run import provenance, wrk
from bench.side_by_side import arguments, interleave, medians_table, save

VARIANTS = ("traces off", "traces on, every request", "traces on, 1 in 10 sampled")


def main() -> int:
    args = arguments(__doc__.splitlines()[0], "tracing.json")
    measured = provenance()
    with grpc_receiver() as receiver, tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "body.bin"
        body.write_bytes(multipart(photo_jpeg()))
        traced = {"RESNET_OTEL_ENDPOINT": receiver.endpoint}
        sampled = {**traced, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
        servers = [start_server(args.model, environment) for environment in ({}, traced, sampled)]
        urls = {variant: url for variant, (_, url, _) in zip(VARIANTS, servers, strict=True)}
        try:
            runs = interleave(VARIANTS, args.clients, args.reps, lambda v, c: wrk(urls[v], body, c, args.seconds))
        finally:
            for process, _, _ in servers:
                process.terminate()
                process.wait(timeout=30)
        received = {"spans": len(receiver.spans), "export_requests": receiver.requests}
    result = {**measured, "model": args.model.name, "seconds": args.seconds, "reps": args.reps}
    result |= {"received": received, "runs": runs}
    save(args.out, result)
    print(table(result))
    print(f"the receiver took {received['spans']} spans in {received['export_requests']} exports")
    return 0


def table(result: dict) -> str:
    """The medians, as the Markdown table docs/performance.md shows."""
    return medians_table(result, "traces")


if __name__ == "__main__":
    sys.exit(main())
