"""Two versions of the service side by side on this machine's CPU: this checkout and another src/ folder.

    .venv/bin/python -m bench.versions --other-src /tmp/old/src --model models/resnet50.onnx [--null] [--reps 3]

Both run `resnet-service serve` with the same settings and are driven in turn by wrk (one 451×300 JPEG, 1 and
8 connections), interleaved, the order alternating between repetitions; the table gives medians. To make the other
folder: `git archive COMMIT src | tar -x -C /tmp/old`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.null_model import write_null_model
from bench.path import compare, print_table, service
from bench.quick import multipart, photo_jpeg
from bench.run import commit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other-src", type=Path, required=True, help="the other version's src/ folder")
    parser.add_argument("--model", type=Path, default=Path("models/resnet50.onnx"))
    parser.add_argument("--null", action="store_true", help="also compare on a null model (the request path alone)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/versions.json"))
    args = parser.parse_args()
    other = {"PYTHONPATH": os.pathsep.join([str(args.other_src.resolve()), os.environ.get("PYTHONPATH", "")])}
    result: dict[str, object] = {"commit": commit(), "other_src": str(args.other_src), "reps": args.reps}
    with tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "body.bin"
        body.write_bytes(multipart(photo_jpeg()))
        models = {"model": args.model}
        if args.null:
            models["null model"] = write_null_model(Path(scratch) / "null.onnx")
        for label, model in models.items():
            with ExitStack() as servers:
                started = [
                    servers.enter_context(service(model, name="this checkout")),
                    servers.enter_context(service(model, other, name="other src")),
                ]
                runs, _ = compare(started, body, (1, 8), args.seconds, args.reps)
            print_table(f"{label}: {model}", runs, None)
            result[label] = runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
