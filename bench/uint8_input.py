"""A float32-input model and its `--uint8-input` copy side by side: bytes per image, preprocessing, the model, the
service, in interleaved rounds; medians.

    .venv/bin/python -m bench.uint8_input --model models/resnet50.onnx [--seconds 8] [--reps 3] [--clients 1,8]

The copy takes the resized pixels and does the preprocessing arithmetic in its graph. Per image, the service's
preprocessing of the typical photo (a 451×300 JPEG) is timed both ways in this process. The model runs a batch
of 8 on the service's engine, on the runtime RESNET_RUNTIME=auto picks. The service rows are `resnet-service
serve` on each file, both up at once, driven by wrk with that photo. On a GPU the rows that matter are the copies
to the device, a quarter of the bytes: `python -m bench.gpu` measures the copy there too.
"""

from __future__ import annotations

import signal
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bench.quick import multipart, start_server
from bench.run import photos, provenance, wrk
from bench.side_by_side import arguments, interleave, median_ms, medians_table, save
from resnet_service.core.settings import Settings
from resnet_service.export.uint8_input import to_uint8_input
from resnet_service.inference.engine import Engine
from resnet_service.inference.model_contract import InputSpec
from resnet_service.inference.preprocessing import preprocess

VARIANTS = ("float32 input", "uint8 pixels")


def preprocessing_ms(image: bytes, spec: InputSpec, reps: int) -> dict[str, list[float]]:
    """Each variant's preprocessing of ``image``, in ms, ``reps`` medians of 200 runs, interleaved."""
    specs = {VARIANTS[0]: spec, VARIANTS[1]: replace(spec, uint8_pixels=True)}
    figures: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for rep in range(reps):
        for variant in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
            figures[variant].append(
                median_ms(lambda s=specs[variant]: preprocess(image, 10**9, spec=s), 200, warm_up=5)
            )
    return figures


def model_images_per_s(files: dict[str, Path], image: bytes, seconds: float, reps: int) -> dict[str, list[float]]:
    """Each file on the service's own engine, batch 8 of ``image``, ``reps`` times, interleaved."""
    threads = Settings().intra_op_threads
    engines = {variant: Engine.load(path, "cpu", threads, runtime="auto") for variant, path in files.items()}
    figures: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    try:
        rows = {v: [preprocess(image, 10**9, spec=e.contract.input)] * 8 for v, e in engines.items()}
        for rep in range(reps):
            for variant in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
                engine, batch = engines[variant], rows[variant]
                runs = max(3, int(seconds * 4))
                figures[variant].append(
                    8 / (median_ms(lambda e=engine, b=batch: e.run_sync(b), runs, warm_up=5) / 1000)
                )
    finally:
        for engine in engines.values():
            engine.close()
    return figures


def run(model: Path, seconds: float, reps: int, clients: list[int], out: Path) -> dict[str, Any]:
    result: dict[str, Any] = {**provenance(), "seconds_per_point": seconds, "reps": reps, "clients": clients}
    image = photos()["typical 451x300"]
    with tempfile.TemporaryDirectory() as scratch:
        uint8 = Path(scratch) / "uint8.onnx"
        proto = onnx.load(str(model))
        engine = Engine.load(model, "cpu", 1, runtime="auto")
        spec = engine.contract.input
        result["runtime"] = f"{engine.runtime} {engine.precision}"
        engine.close()
        onnx.save(to_uint8_input(proto, spec), str(uint8))
        files = {VARIANTS[0]: model, VARIANTS[1]: uint8}
        result["bytes_per_image"] = {
            VARIANTS[0]: int(np.prod(spec.row_shape)) * 4,
            VARIANTS[1]: spec.height * spec.width * 3,
        }
        print("preprocessing, ms per image", flush=True)
        result["preprocess_ms"] = preprocessing_ms(image, spec, reps)
        print("the model, batch 8", flush=True)
        result["model_images_per_s"] = model_images_per_s(files, image, seconds, reps)
        body = Path(scratch) / "body.bin"
        body.write_bytes(multipart(image))
        servers = {variant: start_server(path) for variant, path in files.items()}
        try:
            for _, url, _ in servers.values():
                wrk(url, body, 2, 2)  # warm the connections and the arenas
            print("the service, direct to uvicorn", flush=True)
            result["runs"] = interleave(
                VARIANTS, clients, reps, lambda variant, count: wrk(servers[variant][1], body, count, seconds)
            )
        finally:
            for process, _, _ in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    save(out, result)
    return result


def table(result: dict[str, Any]) -> str:
    lines = ["| | float32 input | uint8 pixels |", "|---|---|---|"]
    lines.append(
        "| bytes per image to the model | " + " | ".join(f"{result['bytes_per_image'][v]:,}" for v in VARIANTS) + " |"
    )
    for key, label, unit in (
        ("preprocess_ms", "preprocessing per image", "ms"),
        ("model_images_per_s", "model, batch 8", "images/s"),
    ):
        lines.append(
            f"| {label} | " + " | ".join(f"{statistics.median(result[key][v]):.2f} {unit}" for v in VARIANTS) + " |"
        )
    return "\n".join(lines) + "\n\n" + medians_table(result, "service")


def main() -> int:
    args = arguments(__doc__.splitlines()[0], "uint8_input.json")
    result = run(args.model, args.seconds, args.reps, args.clients, args.out)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
