"""A model swap under load: connections classify without pause while the model's file is replaced.

    python -m bench.swap --first A.onnx --second B.onnx [--seconds 30] [--connections 8]

The service serves a folder holding one model, ``pets``, first ``A``. Halfway through, ``B`` is renamed over it
(an atomic rename, as a deployment does it); the folder watcher loads and warms B beside A and swaps, and the
load goes on for at least half of ``--seconds`` after that. Every
answer must be a 200 naming only one model's classes: A's before the swap, B's once /health reports the new
version, either in between (a request that started on A finishes on A), and /health/ready must stay 200 all
through. Prints the counts and latencies, by phase, as JSON. A and B must name different classes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import onnxruntime as ort

from bench.quick import start_server
from resnet_service.inference.model_contract import session_contract
from tests.support.images import encode, photo

__all__ = ["SwapReport", "swap_under_load"]

NAME = "pets"


@dataclass
class Answer:
    sent: float
    took: float
    status: int
    model: str  # "first", "second", or "neither" when the labels belong to no one model


@dataclass
class SwapReport:
    seconds: float
    connections: int
    answers: int
    non_200: int
    wrong_model: int
    # /health/ready polled every 50 ms from the rename until the new version served: answers other than 200.
    ready_not_200: int = 0
    ready_polls: int = 0
    swap_s: float = 0.0
    by_phase: dict[str, dict[str, float]] = field(default_factory=dict)


def _labels(path: Path) -> set[str]:
    """The class names the service will answer with, read as the service reads them."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return set(session_contract(session, path).labels.names)


def _version(client: httpx.Client) -> int:
    (model,) = [m for m in client.get("/health").json()["models"] if m["name"] == NAME]
    return int(model["version"])


def swap_under_load(first: Path, second: Path, seconds: float, connections: int) -> SwapReport:
    first_labels, second_labels = _labels(first), _labels(second)
    if first_labels & second_labels:
        raise ValueError("the two models must name different classes, so that each answer says which one gave it")
    jpeg = encode(photo("chelsea"), "JPEG")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "models"
        folder.mkdir()
        shutil.copyfile(first, folder / f"{NAME}.onnx")
        staged = Path(scratch) / "staged.onnx"
        shutil.copyfile(second, staged)
        settings = {"RESNET_MODEL_DIR": str(folder), "RESNET_MODEL_POLL_S": "0.25"}
        process, url, _ = start_server(first, settings)
        answers: list[Answer] = []
        lock = threading.Lock()
        started = time.monotonic()
        # The load runs half the time before the rename and at least half after the swap, however long the new
        # version takes to load and warm up on this machine.
        stop = threading.Event()

        def client_loop() -> None:
            with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
                while not stop.is_set():
                    sent = time.monotonic()
                    response = client.post(f"/predict?model={NAME}", files={"image": ("cat.jpg", jpeg)})
                    took = time.monotonic() - sent
                    model = "neither"
                    if response.status_code == 200:
                        labels = {p["label"] for p in response.json()["predictions"]}
                        model = "first" if labels <= first_labels else "second" if labels <= second_labels else model
                    with lock:
                        answers.append(Answer(sent - started, took, response.status_code, model))

        try:
            threads = [threading.Thread(target=client_loop) for _ in range(connections)]
            for thread in threads:
                thread.start()
            time.sleep(seconds / 2)
            with httpx.Client(base_url=url, timeout=10, trust_env=False) as control:
                renamed = time.monotonic()
                staged.rename(folder / f"{NAME}.onnx")
                readiness: list[int] = []
                while _version(control) < 2:
                    if time.monotonic() - renamed > seconds:
                        raise RuntimeError("the new version was not swapped in")
                    readiness.append(control.get("/health/ready").status_code)
                    time.sleep(0.05)
                swapped = time.monotonic()
            time.sleep(max(0.0, max(started + seconds, swapped + seconds / 2) - time.monotonic()))
            stop.set()
            ended = time.monotonic()
            for thread in threads:
                thread.join()
        finally:
            stop.set()
            process.terminate()
            process.wait(timeout=30)
    renamed_at, swapped_at = renamed - started, swapped - started
    wrong = sum(
        1
        for a in answers
        if a.status == 200
        and (
            a.model == "neither"
            or (a.model == "second" and a.sent + a.took < renamed_at)
            or (a.model == "first" and a.sent > swapped_at)
        )
    )
    phases = {
        "before": [a for a in answers if a.sent + a.took < renamed_at],
        "during": [a for a in answers if a.sent + a.took >= renamed_at and a.sent <= swapped_at],
        "after": [a for a in answers if a.sent > swapped_at],
    }
    report = SwapReport(
        seconds=round(ended - started, 1),
        connections=connections,
        answers=len(answers),
        non_200=sum(1 for a in answers if a.status != 200),
        wrong_model=wrong,
        ready_not_200=sum(1 for status in readiness if status != 200),
        ready_polls=len(readiness),
        swap_s=round(swapped_at - renamed_at, 3),
    )
    for phase, group in phases.items():
        took = sorted(a.took for a in group)
        report.by_phase[phase] = {
            "answers": len(group),
            "first_model": sum(1 for a in group if a.model == "first"),
            "second_model": sum(1 for a in group if a.model == "second"),
            "p50_ms": round(1000 * statistics.median(took), 1) if took else 0.0,
            "p99_ms": round(1000 * took[min(len(took) - 1, int(0.99 * len(took)))], 1) if took else 0.0,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=Path, required=True, help="the model served first")
    parser.add_argument("--second", type=Path, required=True, help="the model swapped in (other class names)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(asdict(swap_under_load(args.first, args.second, args.seconds, args.connections)), indent=2))


if __name__ == "__main__":
    main()
