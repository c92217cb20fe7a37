"""One session with N intra-op threads, or N sessions with one thread each? Raw ONNX Runtime, batch 1 and 8.

.venv/bin/python -m bench.session_layout --model models/resnet50.onnx [--seconds 8]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from resnet_service.core.settings import available_cpus


def session(model: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


def throughput(sessions: list[ort.InferenceSession], batch: int, seconds: float) -> float:
    inputs = np.random.default_rng(0).uniform(-120, 150, (batch, 224, 224, 3)).astype(np.float32)
    counts = [0] * len(sessions)
    for s in sessions:
        s.run(None, {"input": inputs})
    deadline = time.monotonic() + seconds

    def loop(index: int) -> None:
        while time.monotonic() < deadline:
            sessions[index].run(None, {"input": inputs})
            counts[index] += batch

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(sessions))]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/resnet50.onnx"))
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    cpus = available_cpus()
    layouts = {
        f"1 session × {cpus} threads": [session(args.model, cpus)],
        f"{cpus} sessions × 1 thread": [session(args.model, 1) for _ in range(cpus)],
    }
    for name, sessions in layouts.items():
        for batch in (1, 8):
            print(f"{name}, batch {batch}: {throughput(sessions, batch, args.seconds):.1f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
