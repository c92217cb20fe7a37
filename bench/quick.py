"""Core figures in one run: cold start, RSS, and /predict throughput at 1 and 8 clients vs raw ONNX Runtime.

    .venv/bin/python bench/quick.py --model models/resnet50.onnx [--seconds 20]

The server runs in its own process; the load comes from an async httpx client in this process, with each
multipart body built once up front so the client spends as little CPU as it can on the same two cores. Raw
ONNX Runtime is measured after the server has stopped, with the same session options. Compare the figures only
with each other, as ratios: machines differ.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image
from skimage import data

from resnet_service.core.settings import available_cpus
from resnet_service.inference.preprocessing import preprocess
from resnet_service.process.probe import NotReady, wait_until_ready

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "benchboundary"


def photo_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def multipart(image: bytes) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="cat.jpg"\r\n'
    head += "Content-Type: image/jpeg\r\n\r\n"
    return head.encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_server(model: Path, settings: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str, float]:
    """``resnet-service serve`` on a free port with only ``settings`` (RESNET_*) set; returned once ready."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RESNET_")}, **(settings or {})}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "resnet_service.process.cli", "serve", "--port", str(port), "--model", str(model)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(f"{url}/health/ready", process, timeout=60, interval=0.01)
    return process, url, time.monotonic() - started


def start_stack(
    model: Path, run_dir: Path, settings: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    """scripts/stack.py (nginx → uvicorn) on free ports, with ``settings`` (RESNET_*) added to this environment,
    once ready: the process, uvicorn's URL and nginx's."""
    api_port, nginx_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/stack.py"), "--run-dir", str(run_dir), "--model", str(model)]
        + ["--api-port", str(api_port), "--nginx-port", str(nginx_port)],
        stdout=subprocess.DEVNULL,
        env={**os.environ, **(settings or {})},
    )
    proxied = f"http://127.0.0.1:{nginx_port}"
    try:
        wait_until_ready(f"{proxied}/health/ready", process, timeout=120)
    except NotReady:
        process.kill()
        raise
    return process, f"http://127.0.0.1:{api_port}", proxied


async def load(url: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, trust_env=False) as client:
        for _ in range(2 * clients):  # warm connections
            await client.post("/predict", content=body, headers=headers)
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                sent = time.monotonic()
                response = await client.post("/predict", content=body, headers=headers)
                if response.status_code != 200:
                    errors += 1
                latencies.append(time.monotonic() - sent)

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "images_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def raw_onnxruntime(model: Path, batch: np.ndarray, seconds: float) -> dict[str, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cpus()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    for _ in range(5):
        session.run(None, {"input": batch})
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent = time.monotonic()
        session.run(None, {"input": batch})
        latencies.append(time.monotonic() - sent)
    return {
        "images_per_s": len(latencies) * batch.shape[0] / sum(latencies),
        "p50_ms": 1000 * statistics.median(latencies),
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/resnet50.onnx"))
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    image = photo_jpeg()
    body = multipart(image)
    process, url, cold_start = start_server(args.model)
    try:
        rss_ready = rss_mb(process.pid)
        service = [asyncio.run(load(url, body, clients, args.seconds)) for clients in (1, 8)]
        rss_after = rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    raw = raw_onnxruntime(args.model, preprocess(image, 89_478_485), args.seconds)
    result = {
        "cpu": cpu_model(),
        "cpus": available_cpus(),
        "onnxruntime": ort.__version__,
        "cold_start_s": cold_start,
        "rss_mb_ready": rss_ready,
        "rss_mb_after_load": rss_after,
        "raw_batch1": raw,
        "service": service,
    }
    print(json.dumps(result, indent=2))
    print(f"\ncold start {cold_start:.2f} s; RSS {rss_ready:.0f} MB ready, {rss_after:.0f} MB after load")
    print(f"raw ONNX Runtime batch 1: {raw['images_per_s']:.1f} images/s, p50 {raw['p50_ms']:.1f} ms")
    for row in service:
        print(
            f"service, {row['clients']} client(s): {row['images_per_s']:.1f} images/s "
            f"({row['images_per_s'] / raw['images_per_s']:.2f} × raw), p50 {row['p50_ms']:.1f} ms, "
            f"p99 {row['p99_ms']:.1f} ms, errors {row['errors']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
