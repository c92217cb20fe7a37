"""The CPU runtimes side by side: raw ONNX Runtime, raw OpenVINO fp32 and bf16, and the service on each, direct to
uvicorn and through nginx, in interleaved rounds; medians, a JSON and a plot.

    .venv/bin/python -m bench.runtimes --model models/resnet50.onnx [--int8-model PATH] [--seconds 8] [--reps 3]
        [--clients 8]

Each round measures every row once, in an order that turns between rounds. A raw row runs the same compiled model
the service would, at batch 1 and 8, with nothing else on the machine. A service row is `scripts/stack.py` with
RESNET_RUNTIME and RESNET_PRECISION set, driven by wrk with the typical photo (a 451×300 JPEG) at each client count,
first direct to uvicorn and then through nginx (the other way round in the next round). With --int8-model, the INT8
file runs on each runtime too. bf16 rows are left out, with the reason printed, on a CPU without bf16. `make bench`
runs this after its own rows.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.quick import multipart, start_stack
from bench.run import ROOT, photos, provenance, wrk
from bench.side_by_side import save
from resnet_service.core.errors import StartupError
from resnet_service.core.settings import Settings
from resnet_service.inference.openvino_model import OpenVinoModel, openvino_installed
from resnet_service.inference.preprocessing import preprocess

# Each variant: the model file's role, RESNET_RUNTIME, RESNET_PRECISION; each runs raw and as the service.
VARIANTS = {
    "onnxruntime fp32": ("fp32", "onnxruntime", "fp32"),
    "openvino fp32": ("fp32", "openvino", "fp32"),
    "openvino bf16": ("fp32", "openvino", "bf16"),
}
INT8_VARIANTS = {
    "onnxruntime int8": ("int8", "onnxruntime", "fp32"),
    "openvino int8": ("int8", "openvino", "fp32"),
    "openvino int8+bf16": ("int8", "openvino", "bf16"),
}
BATCHES = (1, 8)


def _timed(run: Callable[[], object], seconds: float) -> dict[str, float]:
    for _ in range(3):
        run()
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        run()
        latencies.append(time.perf_counter() - began)
    return {"runs": len(latencies), "seconds_per_run": statistics.median(latencies)}


def raw_runner(
    runtime: str, precision: str, model: Path, threads: int
) -> tuple[Callable[[np.ndarray], object], Callable[[], None]]:
    """A function running one batch as the service's runtime would, and how to free it."""
    if runtime == "onnxruntime":
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        return (lambda batch: session.run(None, {input_name: batch})), (lambda: None)
    compiled = OpenVinoModel.load(model, precision, threads, requests=1)  # type: ignore[arg-type]
    return (lambda batch: compiled.run(list(batch[:, np.newaxis]))), compiled.close


def measure_raw(
    runtime: str, precision: str, model: Path, image: bytes, seconds: float, threads: int
) -> dict[int, float]:
    run, close = raw_runner(runtime, precision, model, threads)
    single = preprocess(image, 10**9)
    try:
        rows = {}
        for size in BATCHES:
            batch = np.repeat(single, size, axis=0)
            timed = _timed(lambda batch=batch: run(batch), seconds / len(BATCHES))
            rows[size] = size / timed["seconds_per_run"]
        return rows
    finally:
        close()


def measure_service(
    runtime: str, precision: str, model: Path, body: Path, clients: list[int], seconds: float, nginx_first: bool
) -> dict[str, dict[int, dict[str, float]]]:
    settings = {
        "RESNET_RUNTIME": runtime,
        "RESNET_PRECISION": precision,
        # nginx's per-address limit (100 requests/s by default) would cap the fast rows: wrk is one address.
        "NGINX_RATE_LIMIT": os.environ.get("NGINX_RATE_LIMIT", "100000r/s"),
    }
    with tempfile.TemporaryDirectory() as run_dir:
        process, direct, proxied = start_stack(model, Path(run_dir), settings)
        try:
            wrk(direct, body, 2, 2)  # warm the connections and the arenas
            order = [("nginx", proxied), ("direct", direct)]
            rows: dict[str, dict[int, dict[str, float]]] = {}
            for path, url in order if nginx_first else reversed(order):
                rows[path] = {count: wrk(url, body, count, seconds) for count in clients}
            return rows
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def bf16_refusal(model: Path) -> str | None:
    """Why bf16 cannot run here, or None."""
    if not openvino_installed():
        return "OpenVINO is not installed"
    try:
        OpenVinoModel.load(model, "bf16", 1, requests=1).close()
    except StartupError as exc:
        return str(exc)
    return None


def run(models: dict[str, Path], seconds: float, reps: int, clients: list[int], out: Path) -> dict[str, Any]:
    """Every variant whose model role is in ``models`` ("fp32", and "int8" when given), raw and served."""
    result: dict[str, Any] = {**provenance(), "seconds_per_point": seconds, "reps": reps, "clients": clients}
    threads = Settings().intra_op_threads
    image = photos()["typical 451x300"]
    variants = {name: v for name, v in {**VARIANTS, **INT8_VARIANTS}.items() if v[0] in models}
    left_out = []
    if not openvino_installed():
        left_out.append("OpenVINO is not installed: pip install -e '.[openvino]'")
        variants = {name: v for name, v in variants.items() if v[1] != "openvino"}
    elif (refusal := bf16_refusal(models["fp32"])) is not None:
        left_out.append(f"bf16: {refusal}")
        variants = {name: v for name, v in variants.items() if v[2] != "bf16"}
    result["left_out"] = left_out
    for line in left_out:
        print(f"left out: {line}")
    names = list(variants)
    with tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "body.bin"
        body.write_bytes(multipart(image))
        raw: dict[str, dict[int, list[float]]] = {name: {size: [] for size in BATCHES} for name in names}
        served: dict[str, dict[str, dict[int, list[dict[str, float]]]]] = {
            name: {path: {count: [] for count in clients} for path in ("direct", "nginx")} for name in names
        }
        for rep in range(reps):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                role, runtime, precision = variants[name]
                for size, figure in measure_raw(runtime, precision, models[role], image, seconds, threads).items():
                    raw[name][size].append(figure)
                print(f"  rep {rep + 1} raw {name}: " + ", ".join(f"b{s} {raw[name][s][-1]:.1f}/s" for s in BATCHES))
            for name in order:
                role, runtime, precision = variants[name]
                rows = measure_service(runtime, precision, models[role], body, clients, seconds, rep % 2 == 1)
                for path, by_clients in rows.items():
                    for count, figures in by_clients.items():
                        served[name][path][count].append(figures)
                        print(f"  rep {rep + 1} service {name} {path} c={count}: {figures['images_per_s']:.1f}/s")
    result["raw"] = raw
    result["service"] = served
    result["medians"] = medians(raw, served)
    save(out / "runtimes.json", result)
    plot(result, out / "runtimes.png")
    return result


def medians(
    raw: dict[str, dict[int, list[float]]], served: dict[str, dict[str, dict[int, list[dict[str, float]]]]]
) -> dict[str, Any]:
    rows: dict[str, Any] = {
        f"raw {name}": {f"batch {size}": statistics.median(figures) for size, figures in by_size.items()}
        for name, by_size in raw.items()
    }
    for name, by_path in served.items():
        for path, by_clients in by_path.items():
            for count, figures in by_clients.items():
                rows.setdefault(f"service {name} {path}", {})[f"c={count}"] = {
                    key: statistics.median(f[key] for f in figures) for key in ("images_per_s", "p50_ms", "p99_ms")
                }
    return rows


def table(result: dict[str, Any]) -> str:
    """Every row's median images/s, and its ratio to raw ONNX Runtime's best and to its own raw runtime's best."""
    rows = result["medians"]
    best = {name: max(by_size.values()) for name, by_size in rows.items() if name.startswith("raw ")}
    reference = best["raw onnxruntime fp32"]
    lines = [
        "| row | images/s | vs raw ONNX Runtime fp32 | vs its own raw best | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, value in rows.items():
        if name.startswith("raw "):
            for size, figure in value.items():
                own = f"{figure / best[name]:.2f}"
                lines.append(f"| {name}, {size} | {figure:.1f} | {figure / reference:.2f} | {own} | | |")
            continue
        config = name.removeprefix("service ").rsplit(" ", 1)[0]
        own_best = best[f"raw {config}"]
        for count, med in value.items():
            images = med["images_per_s"]
            lines.append(
                f"| {name}, {count} | {images:.1f} | {images / reference:.2f} | {images / own_best:.2f} | "
                f"{med['p50_ms']:.0f} | {med['p99_ms']:.0f} |"
            )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["medians"]
    names, values = [], []
    for name, value in rows.items():
        if name.startswith("raw "):
            names.append(f"{name}\nbatch 8")
            values.append(value["batch 8"])
        else:
            count = max(value, key=lambda key: int(key.removeprefix("c=")))
            names.append(f"{name.removeprefix('service ')}\n{count}")
            values.append(value[count]["images_per_s"])
    figure, axis = plt.subplots(figsize=(max(8, 1.2 * len(names)), 5))
    colours = ["grey" if name.startswith("raw ") else "tab:blue" for name in names]
    axis.bar(range(len(names)), values, color=colours)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    axis.set(ylabel="images/s (median)", title=f"CPU runtimes, {result['commit']}, {result['cpu']['model']}")
    for index, value in enumerate(values):
        axis.text(index, value, f"{value:.0f}", ha="center", va="bottom", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models/resnet50.onnx")
    parser.add_argument("--int8-model", type=Path, help="also this INT8 model, raw and served, on each runtime")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", default="8")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()
    models = {"fp32": args.model, **({"int8": args.int8_model} if args.int8_model else {})}
    result = run(models, args.seconds, args.reps, [int(c) for c in args.clients.split(",")], args.out)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
