"""`make bench`: the service through nginx against raw ONNX Runtime, in one run, with a JSON and a plot.

    .venv/bin/python -m bench.run --model models/resnet50.onnx [--seconds 10] [--int8-model PATH]

1. Cold start: `resnet-service serve` alone, three times (model in the page cache), process start → ready.
2. `scripts/stack.py` (nginx → uvicorn, the settings in this environment), driven by wrk (one thread, C
   connections) at each concurrency, with a typical photo (451×300 JPEG) and a 12 MP one.
3. Raw ONNX Runtime on the same model after the stack has stopped: batch 1 and 8, threads spinning or not.
4. Optionally the same for an INT8 model.
5. The CPU runtimes side by side (bench.runtimes): raw ONNX Runtime, raw OpenVINO fp32 and bf16, and the service
   on each, direct and through nginx, at 8 clients, in interleaved rounds.

It writes bench/results/bench.json (every figure, the CPU and its flags, the commit and the settings) and
bench/results/bench.png, and bench.runtimes' runtimes.json and runtimes.png beside them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from skimage import data

from bench.quick import BOUNDARY, multipart, rss_mb, start_server, start_stack
from resnet_service.core.settings import Settings
from resnet_service.inference.preprocessing import preprocess

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 2, 4, 8, 16, 32)


def photos() -> dict[str, bytes]:
    chelsea = Image.fromarray(data.chelsea())
    typical, large = io.BytesIO(), io.BytesIO()
    chelsea.save(typical, format="JPEG", quality=90)
    chelsea.resize((4000, 3000), Image.Resampling.LANCZOS).save(large, format="JPEG", quality=90)
    return {"typical 451x300": typical.getvalue(), "12 MP 4000x3000": large.getvalue()}


def cpu_info() -> dict[str, object]:
    text = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    return {"model": model, "flags": sorted(flags & set(wanted)), "cpus": Settings().intra_op_threads}


def commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    return result.stdout.strip() + ("-dirty" if dirty.strip() else "")


def provenance() -> dict[str, object]:
    """What every result file starts with: which code, when, on what."""
    return {"commit": commit(), "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu_info()}


def cold_starts(model: Path, runs: int = 3) -> dict[str, float]:
    seconds, rss = [], []
    for _ in range(runs):
        process, _, started = start_server(model)
        seconds.append(started)
        rss.append(rss_mb(process.pid))
        process.terminate()
        process.wait(timeout=30)
    return {"cold_start_s_median": statistics.median(seconds), "cold_start_s": seconds, "rss_mb_ready": rss[-1]}


def wrk(url: str, body_file: Path, clients: int, seconds: float, script: str = "multipart.lua") -> dict[str, float]:
    """wrk (one thread) POSTing ``body_file`` to ``url``/predict for ``seconds``, with ``script`` from bench/.

    The figures are the script's JSON line, plus requests/s and wrk's own CPU per request (from its rusage), so a
    benchmark can tell the load generator's share of a shared machine from the server's.
    """
    env = {**os.environ, "BODY_FILE": str(body_file), "BOUNDARY": BOUNDARY}
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
    command += ["-s", str(ROOT / "bench" / script), f"{url}/predict"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr or result.stdout}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["seconds"] = figures["duration_us"] / 1e6
    figures["requests_per_s"] = figures["requests"] / figures["seconds"]
    # Only answered images count: a 503 from a full queue is a request, not an image classified.
    figures["images_per_s"] = (figures["requests"] - figures["non_2xx"]) / figures["seconds"]
    figures["clients"] = clients
    load_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    figures["load_cpu_ms_per_request"] = 1000 * load_cpu / max(1, figures["requests"])
    return figures


def service(model: Path, bodies: dict[str, Path], concurrency: tuple[int, ...], seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as run_dir:
        process, _, url = start_stack(model, Path(run_dir))
        api_pid = int((Path(run_dir) / "api.pid").read_text())
        try:
            curves = {}
            for name, body in bodies.items():
                wrk(url, body, 2, 2)  # warm the connections and the arenas for this image size
                curves[name] = [wrk(url, body, clients, seconds) for clients in concurrency]
                print(f"  {name}: " + ", ".join(f"c={r['clients']} {r['images_per_s']:.1f}/s" for r in curves[name]))
            rss = rss_mb(api_pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    return {"curves": curves, "rss_mb_after_load": rss}


def raw_onnxruntime(model: Path, image: bytes, seconds: float) -> list[dict[str, float]]:
    rows = []
    single = preprocess(image, 10**9)
    for spinning in (True, False):
        options = ort.SessionOptions()
        options.intra_op_num_threads = Settings().intra_op_threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        for batch_size in (1, 8):
            batch = np.repeat(single, batch_size, axis=0)
            for _ in range(3):
                session.run(None, {"input": batch})
            latencies = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                began = time.perf_counter()
                session.run(None, {"input": batch})
                latencies.append(time.perf_counter() - began)
            rows.append(
                {
                    "batch": batch_size,
                    "spinning": spinning,
                    "images_per_s": batch_size * len(latencies) / sum(latencies),
                    "p50_ms": 1000 * statistics.median(latencies),
                }
            )
    return rows


def plot(result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["service"]["curves"]
    raw_best = max(row["images_per_s"] for row in result["raw_onnxruntime"])
    raw_b1 = min(row["p50_ms"] for row in result["raw_onnxruntime"] if row["batch"] == 1)
    figure, axes = plt.subplots(2, len(curves), figsize=(6 * len(curves), 8), squeeze=False)
    for column, (name, rows) in enumerate(curves.items()):
        clients = [row["clients"] for row in rows]
        top, bottom = axes[0][column], axes[1][column]
        top.plot(clients, [row["images_per_s"] for row in rows], "o-", label="service through nginx")
        top.axhline(raw_best, color="grey", linestyle="--", label=f"raw ONNX Runtime best ({raw_best:.1f}/s)")
        top.set(title=f"{name}: throughput", xlabel="concurrent clients", ylabel="images/s", xscale="log")
        top.set_ylim(bottom=0)
        bottom.plot(clients, [row["p50_ms"] for row in rows], "o-", label="p50")
        bottom.plot(clients, [row["p99_ms"] for row in rows], "s-", label="p99")
        bottom.axhline(raw_b1, color="grey", linestyle="--", label=f"raw batch-1 latency ({raw_b1:.1f} ms)")
        bottom.set(title=f"{name}: latency", xlabel="concurrent clients", ylabel="ms", xscale="log", yscale="log")
        for axis in (top, bottom):
            axis.set_xticks(clients, [str(c) for c in clients])
            axis.grid(alpha=0.3)
            axis.legend()
    cpu = result["machine"]["cpu"]
    figure.suptitle(
        f"resnet-service {result['commit']} on {cpu['model']} ({cpu['cpus']} CPUs, {', '.join(cpu['flags'])})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/resnet50.onnx"))
    parser.add_argument("--int8-model", type=Path, help="also measure this INT8 model at 1 and 8 clients")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    parser.add_argument("--reps", type=int, default=3, help="interleaved rounds of the CPU runtimes' rows")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed; on Debian or Ubuntu: apt-get install -y wrk")
    measured = provenance()  # before the run, which takes minutes
    concurrency = tuple(int(c) for c in args.concurrency.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    images = photos()
    bodies = {}
    for index, (name, image) in enumerate(images.items()):
        bodies[name] = args.out / f"body-{index}.bin"
        bodies[name].write_bytes(multipart(image))

    print("cold start …")
    cold = cold_starts(args.model)
    print(f"service through nginx, {args.seconds:.0f} s per point …")
    served = service(args.model, bodies, concurrency, args.seconds)
    int8 = None
    if args.int8_model:
        print("INT8 service …")
        typical = {name: body for name, body in bodies.items() if name.startswith("typical")}
        int8 = service(args.int8_model, typical, (1, 8), args.seconds)
    print("raw ONNX Runtime …")
    raw = raw_onnxruntime(args.model, images["typical 451x300"], args.seconds)
    # Imported here: bench.runtimes builds on this module's helpers.
    from bench.runtimes import run as compare_runtimes
    from bench.runtimes import table as runtimes_table

    print(f"CPU runtimes side by side, {args.reps} interleaved rounds …")
    models = {"fp32": args.model, **({"int8": args.int8_model} if args.int8_model else {})}
    runtimes = compare_runtimes(models, args.seconds, args.reps, [8], args.out)
    settings = Settings(model_path=args.model).model_dump(mode="json")
    result = {
        **measured,
        "machine": {"cpu": cpu_info(), "python": platform.python_version(), "onnxruntime": ort.__version__},
        "settings": settings,
        "seconds_per_point": args.seconds,
        "cold_start": cold,
        "service": served,
        "raw_onnxruntime": raw,
        "int8_service": int8,
        "runtimes": runtimes,
    }
    for body in bodies.values():
        body.unlink()
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / "bench.png")
    report(result)
    print(f"\nCPU runtimes ({args.out / 'runtimes.json'}, runtimes.png):\n{runtimes_table(runtimes)}")
    return 0


def report(result: dict[str, object]) -> None:
    raw = result["raw_onnxruntime"]
    raw_best = max(row["images_per_s"] for row in raw)
    raw_b1 = max((row for row in raw if row["batch"] == 1), key=lambda row: row["images_per_s"])
    print(
        f"\nraw ONNX Runtime: best {raw_best:.1f} images/s; "
        f"batch 1 {raw_b1['images_per_s']:.1f}/s, p50 {raw_b1['p50_ms']:.1f} ms"
    )
    for name, rows in result["service"]["curves"].items():
        print(f"{name}:")
        for row in rows:
            print(
                f"  c={row['clients']:<3} {row['images_per_s']:6.1f} images/s "
                f"({row['images_per_s'] / raw_best:.2f} × raw) "
                f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  non-2xx {row['non_2xx']}  "
                f"errors {row['connect_errors'] + row['read_errors'] + row['write_errors'] + row['timeouts']}"
            )
    cold = result["cold_start"]
    rss = result["service"]["rss_mb_after_load"]
    runs = len(cold["cold_start_s"])
    print(f"cold start {cold['cold_start_s_median']:.2f} s (median of {runs}); RSS {rss:.0f} MB after load")
    if result["int8_service"]:
        for row in result["int8_service"]["curves"]["typical 451x300"]:
            print(f"INT8 c={row['clients']}: {row['images_per_s']:.1f} images/s, p50 {row['p50_ms']:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
