"""The benchmark's GPU mode: the model's own speed on one NVIDIA GPU, and the service over HTTP in front of it.

    PYTHONPATH=src:SITE python3 -m bench.gpu [--model FILE.onnx] [--workers 1,4] [--levels 1,16,64,256]

Needs onnxruntime-gpu and a GPU. Without --model it builds a stand-in ResNet-50 with torchvision (random weights,
the service's model contract: NHWC float32 ``input`` → softmax ``probabilities``). It prints one JSON line per
figure and writes them all to $OUT/gpu.json (or bench/results/gpu.json):

- the first run of a new batch size under each cuDNN algorithm search, and the warm-up (cold start) it adds;
- the model's throughput per batch size through ``session.run`` with numpy, through the service's device path
  (fixed buffers, pinned host memory, a session per batch size), and with CUDA graphs;
- the time a batch takes when consecutive batches differ in size, as dynamic batching makes them;
- fp16 against fp32: throughput at batch 32, largest probability difference and top-5 agreement on photos;
- the model's ``--uint8-input`` copy (uint8 pixels in, the preprocessing in the graph) against it: throughput
  per batch size on the device path and the largest probability difference on photos, and the service on it;
- the service: a 451×300 JPEG from several client processes at each connection count, per worker count, with
  the stages' medians from its JSON log, the slowest batch, and how busy the GPU was (nvidia-smi).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.path import ROOT, service
from bench.quick import BOUNDARY, multipart, photo_jpeg
from resnet_service.export.convert import VERIFICATION_PHOTOS, skimage_photo, skimage_photos
from resnet_service.inference.engine import ConvSearch, CudaOptions, Device, Engine

OUT = Path(os.environ.get("OUT") or ROOT / "bench" / "results")
FIGURES: dict[str, object] = {}
# cuda, or cpu to try this script out on a machine without a GPU (the figures then mean nothing).
DEVICE: list[Device] = ["cuda"]
SEARCHES: tuple[ConvSearch, ...] = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


def emit(key: str, value: object) -> None:
    FIGURES[key] = value
    print(json.dumps({key: value}), flush=True)


def build_stand_in(path: Path) -> None:
    import torch
    import torchvision

    class NHWCSoftmax(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torchvision.models.resnet50(weights=None).eval()
            self.scale = 1.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.scale * self.net(x.permute(0, 3, 1, 2)), dim=1)

    model = NHWCSoftmax().eval()
    # Random weights give logits so close together that every probability is about 1/1000 and a top 5 means
    # nothing; scaled to a spread of 3, the ranking is something fp16 can keep or lose.
    with torch.no_grad():
        spread = float(model.net(torch.rand(8, 3, 224, 224) * 255 - 120).std())
        model.scale = 3.0 / max(spread, 1e-12)
    torch.onnx.export(
        model,
        torch.zeros(1, 224, 224, 3),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["probabilities"],
        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
    )


def rows(count: int, seed: int = 0) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.uniform(-120, 150, (1, 224, 224, 3)).astype(np.float32) for _ in range(count)]


def pixel_rows(count: int, seed: int = 0) -> list[np.ndarray]:
    """What a model with the preprocessing in its graph takes: uint8 RGB pixels."""
    generator = np.random.default_rng(seed)
    return [generator.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8) for _ in range(count)]


def throughput(run: Callable[[list[np.ndarray]], object], batch: list[np.ndarray], seconds: float = 1.5) -> float:
    for _ in range(3):
        run(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(batch)
        done += len(batch)
    return round(done / (time.perf_counter() - started), 1)


def load_engine(
    model: Path, sizes: tuple[int, ...], search: ConvSearch = "HEURISTIC", graphs: bool = True, nhwc: bool = True
) -> Engine:
    return Engine.load(
        model,
        DEVICE[0],
        1,
        1,
        batch_sizes=sizes,
        max_batch_size=sizes[-1],
        cuda=CudaOptions(search, graphs, nhwc),
    )


def plain_session(model: Path, search: ConvSearch = "EXHAUSTIVE") -> Callable[[list[np.ndarray]], np.ndarray]:
    """session.run with numpy in and out, one session for every shape: how the service ran before."""
    import onnxruntime as ort

    cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": search})
    session = ort.InferenceSession(str(model), providers=[cuda if DEVICE[0] == "cuda" else "CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: np.concatenate(batch)})[0]


SIZES = (1, 2, 4, 8, 16, 32)


def cold_start(model: Path) -> None:
    """What a batch size seen for the first time costs per search mode, and what warming every size up adds."""
    for search in ("EXHAUSTIVE", "HEURISTIC"):
        run = plain_session(model, search)
        run(rows(1))
        firsts = []
        for size in (3, 6, 12, 24):
            batch = rows(size)
            started = time.perf_counter()
            run(batch)
            firsts.append(1000 * (time.perf_counter() - started))
        emit(f"first_run_of_a_new_batch_size_ms_{search}", round(statistics.median(firsts), 1))
        started = time.perf_counter()
        engine = load_engine(model, SIZES, search)
        loaded = time.perf_counter() - started
        asyncio.run(engine.warm_up())
        emit(f"service_engine_load_s_warm_up_s_sizes_1_to_32_{search}", [round(loaded, 2), round(engine.warm_up_s, 2)])
        emit(f"service_engine_img_per_s_bs8_bs32_{search}", [throughput(engine.run_sync, rows(n)) for n in (8, 32)])
        engine.close()


def device_paths(model: Path) -> dict[int, float]:
    """images/s per batch size: session.run with numpy, the device path with a session per size, with graphs."""
    sizes = (1, 8, 32, 64)
    plain = plain_session(model)
    emit("fp32_session_run_numpy_img_per_s_bs1_8_32_64", [throughput(plain, rows(n)) for n in sizes])
    check = rows(5, seed=3)
    expected = plain(check)
    speeds: dict[int, float] = {}
    for label, graphs in (("session_per_size", False), ("cuda_graphs", True)):
        engine = load_engine(model, sizes, graphs=graphs)
        asyncio.run(engine.warm_up())
        emit(f"fp32_{label}_max_abs_diff_vs_session_run", float(np.abs(engine.run_sync(check) - expected).max()))
        speeds = {n: throughput(engine.run_sync, rows(n)) for n in sizes}
        emit(f"fp32_{label}_nhwc_img_per_s_bs1_8_32_64", list(speeds.values()))
        emit(f"fp32_{label}_pinned", engine.runner is not None and engine.runner.pinned)
        engine.close()
    return speeds


def size_switches(model: Path) -> None:
    """Per-run time when consecutive batches differ in size, as dynamic batching makes them."""
    batches = {size: rows(size, seed=size) for size in SIZES}
    order = [4, 8, 16, 32, 2, 16, 1, 8] * 5

    def timed(run: Callable[[list[np.ndarray]], object]) -> dict[str, float]:
        times = []
        for size in order:
            started = time.perf_counter()
            run(batches[size])
            times.append(1000 * (time.perf_counter() - started))
        return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}

    plain = plain_session(model, "HEURISTIC")
    for size in SIZES:
        plain(batches[size])
    emit("switching_sizes_one_session_numpy", timed(plain))
    for label, graphs in (("session_per_size", False), ("cuda_graphs", True)):
        engine = load_engine(model, SIZES, graphs=graphs)
        asyncio.run(engine.warm_up())
        emit(f"switching_sizes_{label}", timed(engine.run_sync))
        engine.close()


def photo_rows() -> list[np.ndarray]:
    photos = skimage_photos(VERIFICATION_PHOTOS)
    return [photos[i : i + 1] for i in range(len(photos))]


def half_precision(model: Path, fp32_speed: dict[int, float]) -> None:
    """fp16 vs fp32: the model's throughput at batch 32, and agreement on real photos, both on the GPU."""
    import onnx

    from resnet_service.export.fp16 import to_fp16

    batch = photo_rows()
    reference = load_engine(model, (1, 8))
    expected = reference.run_sync(batch)
    reference.close()
    half, _ = to_fp16(onnx.load(str(model)), np.concatenate(batch), expected, "fp32")
    path = model.with_name(model.stem + ".fp16.onnx")
    onnx.save(half, str(path))
    engine = load_engine(path, (1, 8, 32, 64))
    asyncio.run(engine.warm_up())
    actual = engine.run_sync(batch)
    top5 = np.argsort(-expected, axis=1)[:, :5], np.argsort(-actual, axis=1)[:, :5]
    emit("fp16_vs_fp32_photos_top1_probabilities", [round(float(v), 4) for v in expected.max(axis=1)])
    emit("fp16_max_abs_diff", float(np.abs(actual - expected).max()))
    emit("fp16_top5_identical", bool(np.array_equal(*top5)))
    speed = {n: throughput(engine.run_sync, rows(n)) for n in (1, 8, 32, 64)}
    engine.close()
    emit("fp16_cuda_graphs_nhwc_img_per_s_bs1_8_32_64", list(speed.values()))
    emit("fp16_over_fp32_bs32", round(speed[32] / fp32_speed[32], 2))


def uint8_input(model: Path, fp32_speed: dict[int, float]) -> Path:
    """The model's --uint8-input copy against it on the device: agreement on photos, images/s per batch size."""
    import onnx

    from resnet_service.export.uint8_input import pixels_and_tensors, to_uint8_input

    reference = load_engine(model, (1, 8))
    spec = reference.contract.input
    pixels, tensors = pixels_and_tensors([skimage_photo(name) for name in VERIFICATION_PHOTOS], spec)
    expected = reference.run_sync(list(tensors[:, np.newaxis]))
    reference.close()
    path = model.with_name(model.stem + ".uint8.onnx")
    onnx.save(to_uint8_input(onnx.load(str(model)), spec), str(path))
    engine = load_engine(path, (1, 8, 32, 64))
    asyncio.run(engine.warm_up())
    emit(
        "uint8_input_max_abs_diff_vs_fp32_photos",
        float(np.abs(engine.run_sync(list(pixels[:, np.newaxis])) - expected).max()),
    )
    speed = {n: throughput(engine.run_sync, pixel_rows(n)) for n in (1, 8, 32, 64)}
    engine.close()
    emit("uint8_input_cuda_graphs_nhwc_img_per_s_bs1_8_32_64", list(speed.values()))
    emit("uint8_input_over_fp32_bs64", round(speed[64] / fp32_speed[64], 2))
    return path


async def _clients(url: str, body: bytes, connections: int, seconds: float) -> tuple[list[float], dict[str, int]]:
    """Each connection posts the photo over and over; answers other than 200, and broken connections, are counted."""
    import httpx

    latencies: list[float] = []
    failures: dict[str, int] = {}
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as client:

        async def one() -> None:
            while time.perf_counter() < end:
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures[str(response.status_code)] = failures.get(str(response.status_code), 0) + 1

        await asyncio.gather(*(one() for _ in range(connections)))
    return latencies, failures


def _client_process(args: tuple[str, bytes, int, float]) -> tuple[list[float], dict[str, int]]:
    return asyncio.run(_clients(*args))


@contextmanager
def gpu_busy() -> Iterator[list[int]]:
    """Samples nvidia-smi's utilisation every 200 ms while the block runs; the list fills in as it goes."""
    samples: list[int] = []
    command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"]
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    except FileNotFoundError:
        yield samples
        return
    try:
        yield samples
    finally:
        process.terminate()
        out, _ = process.communicate()
        samples.extend(int(line) for line in out.split() if line.strip().isdigit())


def load(url: str, body: bytes, connections: int, seconds: float, processes: int) -> dict[str, object]:
    processes = min(processes, connections)
    shares = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    with gpu_busy() as busy, ProcessPoolExecutor(processes) as pool:
        parts = list(pool.map(_client_process, [(url, body, share, seconds) for share in shares]))
    latencies = sorted(x for part in parts for x in part[0])
    failures: dict[str, int] = {}
    for _, part in parts:
        for key, count in part.items():
            failures[key] = failures.get(key, 0) + count
    return {
        "failures": failures,
        "img_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        "gpu_busy_median_pct": statistics.median(busy) if busy else None,
    }


def stages(log: Path, mark: int) -> dict[str, object]:
    """Medians of the service's per-request stages, and its slowest batch, from the JSON log after ``mark``."""
    lines = []
    for line in log.read_bytes()[mark:].decode(errors="replace").splitlines():
        if '"duration_ms"' in line:
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    figures: dict[str, object] = {}
    for key in ("queue_ms", "preprocess_ms", "inference_ms", "batch_size"):
        values = [line[key] for line in lines if isinstance(line.get(key), int | float)]
        if values:
            figures[f"median_{key}"] = round(statistics.median(values), 1)
            if key == "inference_ms":
                figures["max_inference_ms"] = round(max(values), 1)
    return figures


def serve_and_load(
    model: Path,
    workers: int,
    levels: list[int],
    seconds: float,
    env: dict[str, str],
    src: Path | None = None,
    label: str = "",
) -> None:
    """The service (or, from ``src``, another version of it) under load at each connection count."""
    body = multipart(photo_jpeg())
    settings = {
        "RESNET_DEVICE": DEVICE[0],
        "RESNET_WORKERS": str(workers),
        "RESNET_MAX_BATCH_SIZE": "32",
        "RESNET_MAX_QUEUE": "512",
        "RESNET_REQUEST_TIMEOUT_S": "120",
        "RESNET_LOG_FORMAT": "json",
        **env,
    }
    if src is not None:
        settings["PYTHONPATH"] = os.pathsep.join([str(src.resolve()), os.environ.get("PYTHONPATH", "")])
    options = "".join(f"_{key.removeprefix('RESNET_').lower()}={value}" for key, value in env.items())
    name = ("other" if src else "service") + f"{label}_w{workers}{options}"
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "service.log"
        started = time.perf_counter()
        with service(model, settings, name, log_path=log) as server:
            emit(f"{name}_ready_s", round(time.perf_counter() - started, 1))
            for connections in levels:
                mark = log.stat().st_size
                figures = load(server.url + "/predict", body, connections, seconds, processes=4)
                figures.update(stages(log, mark))
                emit(f"{name}_c{connections}", figures)
                if figures["failures"] or server.process.poll() is not None:
                    tail = log.read_bytes()[mark:].decode(errors="replace").splitlines()
                    problems = [line for line in tail if '"duration_ms"' not in line]
                    emit(f"{name}_c{connections}_log", [server.process.poll(), *problems[-12:]])
        warmed = [line for line in log.read_text(errors="replace").splitlines() if "warmed up" in line]
        emit(f"{name}_warm_up_log", warmed[:2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an exported ONNX file; default: a torchvision stand-in")
    parser.add_argument("--workers", default="1,4", help="worker counts to serve with (default: 1,4)")
    parser.add_argument("--levels", default="1,16,64,256", help="connection counts (default: 1,16,64,256)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the service, repeatable")
    parser.add_argument("--service-src", type=Path, help="serve another version's src/ folder, for a baseline")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a dry run of this script")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to skip: cold-start,paths,fp16,uint8,switches,service",
    )
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    DEVICE[0] = args.device
    import onnxruntime as ort

    smi = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    if args.device == "cuda":
        emit("gpu", subprocess.run(smi, capture_output=True, text=True).stdout.strip())
    emit("cpus", os.cpu_count())
    emit("onnxruntime", [ort.__version__, ort.get_available_providers()])
    model = args.model
    if model is None:
        model = Path(tempfile.gettempdir()) / "stand_in_resnet50_nhwc.onnx"
        if not model.exists():
            build_stand_in(model)
    if "cold-start" not in skip:
        cold_start(model)
    uint8_model = None
    if "paths" not in skip:
        speed = device_paths(model)
        if "fp16" not in skip:
            half_precision(model, speed)
        if "uint8" not in skip:
            uint8_model = uint8_input(model, speed)
    if "switches" not in skip:
        size_switches(model)
    if "service" not in skip:
        env = dict(item.split("=", 1) for item in args.env)
        for workers in (int(n) for n in args.workers.split(",")):
            levels = [int(n) for n in args.levels.split(",")]
            serve_and_load(model, workers, levels, args.seconds, env, args.service_src)
        if uint8_model is not None and args.service_src is None:
            # The copy at the largest worker count only: where the host-to-device bytes weigh most.
            workers = max(int(n) for n in args.workers.split(","))
            serve_and_load(uint8_model, workers, levels, args.seconds, env, label="_uint8")
    OUT.mkdir(parents=True, exist_ok=True)
    name = "gpu-other.json" if args.service_src else "gpu.json"
    (OUT / name).write_text(json.dumps(FIGURES, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
