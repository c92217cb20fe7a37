"""gRPC against HTTP on one server, the same photo, the same model: `python -m bench.grpc`.

    .venv/bin/python -m bench.grpc --model models/resnet50.onnx [--seconds 10] [--reps 3] [--clients 1,8]

One `resnet-service serve` with RESNET_GRPC_PORT set is driven in turn by
- wrk, POSTing the photo to /predict as multipart (the tutorial's API),
- tritonclient.http, one v2 infer per request (the image as BYTES, the top 5 by the classification extension),
- tritonclient.grpc, the same infer over gRPC,
with C clients each (wrk connections, or C client processes), interleaved, the order turning between repetitions.
The table gives the medians; bench/results/grpc.json keeps every run.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.quick import free_port, multipart, photo_jpeg, start_server
from bench.run import provenance, wrk
from bench.side_by_side import arguments, interleave, medians_table, save

PROTOCOLS = ("/predict (wrk)", "v2 HTTP (tritonclient.http)", "v2 gRPC (tritonclient.grpc)")


def _client_loop(protocol: str, address: str, image: bytes, seconds: float, out: multiprocessing.Queue) -> None:
    """One client process: infer in a loop for ``seconds``; puts its latencies and CPU seconds on ``out``."""
    if protocol.startswith("v2 gRPC"):
        import tritonclient.grpc as triton
    else:
        import tritonclient.http as triton  # type: ignore[no-redef]
    client = triton.InferenceServerClient(address)
    images = triton.InferInput("image", [1], "BYTES")
    images.set_data_from_numpy(np.array([image], dtype=np.object_))
    top5 = triton.InferRequestedOutput("probabilities", class_count=5)
    for _ in range(3):  # a warm connection
        client.infer("resnet50", [images], outputs=[top5])
    latencies, cpu_started = [], time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        client.infer("resnet50", [images], outputs=[top5])
        latencies.append(time.perf_counter() - began)
    out.put((latencies, time.process_time() - cpu_started))
    client.close()


def triton_load(protocol: str, address: str, image: bytes, clients: int, seconds: float) -> dict[str, float]:
    out: multiprocessing.Queue = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=_client_loop, args=(protocol, address, image, seconds, out))
        for _ in range(clients)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=seconds + 60) for _ in processes]
    for process in processes:
        process.join()
    latencies = sorted(latency for run, _ in results for latency in run)
    cpu = sum(seconds_used for _, seconds_used in results)
    return {
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "client_cpu_ms_per_request": 1000 * cpu / len(latencies),
    }


def main() -> int:
    args = arguments(__doc__.splitlines()[0], "grpc.json")
    measured = provenance()
    image = photo_jpeg()
    grpc_port = free_port()
    process, url, _ = start_server(args.model, {"RESNET_GRPC_PORT": str(grpc_port)})
    try:
        with tempfile.TemporaryDirectory() as scratch:
            body = Path(scratch) / "body.bin"
            body.write_bytes(multipart(image))
            loads: dict[str, Callable[[int], dict[str, float]]] = {
                PROTOCOLS[0]: lambda c: wrk(url, body, c, args.seconds),
                PROTOCOLS[1]: lambda c: triton_load(PROTOCOLS[1], url.removeprefix("http://"), image, c, args.seconds),
                PROTOCOLS[2]: lambda c: triton_load(PROTOCOLS[2], f"127.0.0.1:{grpc_port}", image, c, args.seconds),
            }
            runs = interleave(PROTOCOLS, args.clients, args.reps, lambda protocol, c: loads[protocol](c))
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = {**measured, "seconds": args.seconds, "reps": args.reps, "runs": runs}
    save(args.out, result)
    print(table(result))
    return 0


def table(result: dict) -> str:
    """The medians, as the Markdown table docs/performance.md shows."""
    # wrk reports its own CPU per request; the Python clients theirs.
    return medians_table(
        result, "protocol", cpu=lambda f: f.get("client_cpu_ms_per_request", f.get("load_cpu_ms_per_request"))
    )


if __name__ == "__main__":
    sys.exit(main())
