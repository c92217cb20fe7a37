"""The proxy's cost: /predict through nginx (`make stack`) against uvicorn directly, in one run.

    .venv/bin/python -m bench.proxy --model models/resnet50.onnx [--seconds 20]

It starts scripts/stack.py, then drives the same photo at 1 and 8 clients, alternating direct and through nginx
so that drift on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from bench.quick import ROOT, load, multipart, photo_jpeg, start_stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/resnet50.onnx"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run/bench-proxy")
    args = parser.parse_args()
    body = multipart(photo_jpeg())
    process, direct, proxied = start_stack(args.model, args.run_dir)
    rows = []
    try:
        for clients in (1, 8):
            for name, url in (("direct", direct), ("nginx", proxied)):
                rows.append({"path": name, **asyncio.run(load(url, body, clients, args.seconds))})
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    print(json.dumps(rows, indent=2))
    for clients in (1, 8):
        direct_row, nginx_row = (r for r in rows if r["clients"] == clients)
        ratio = nginx_row["images_per_s"] / direct_row["images_per_s"]
        print(
            f"{clients} client(s): direct {direct_row['images_per_s']:.1f} images/s p50 {direct_row['p50_ms']:.1f} ms; "
            f"nginx {nginx_row['images_per_s']:.1f} images/s p50 {nginx_row['p50_ms']:.1f} ms; "
            f"nginx/direct {ratio:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
