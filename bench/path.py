"""`make bench-path`: the request path against a plain FastAPI app, each on a null model and the real one.

    .venv/bin/python -m bench.path --model models/resnet50.onnx [--int8-model PATH] [--seconds 10] [--reps 3]

For each model (the null model this script writes, the real one, and an INT8 one if given) it starts the plain
FastAPI baseline (bench/baseline_app.py), `resnet-service serve` alone and with 2 workers side by side, plus the
service behind `make stack`'s nginx for the real models, then drives each in turn with wrk, interleaved: every
repetition runs every server at every concurrency, the order alternating, and raw ONNX Runtime (batch 1 and 8,
threads spinning or not) once while the servers idle; the tables give medians of the repetitions. CPU per
request is read from /proc for the server's process tree and from wrk's own rusage. Last, py-spy samples the
service on the null model at 8 connections to say where a request's CPU goes, and how long each request holds
the GIL (what bounds one process however many cores it has).

Compare the figures only with each other: they come from one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.null_model import write_null_model
from bench.profile import profile_service
from bench.quick import free_port, multipart, photo_jpeg
from bench.run import provenance, raw_onnxruntime, wrk
from resnet_service.process.probe import wait_until_ready

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and every process under it (worker processes, nginx), all threads."""
    total = 0
    for member in descendants(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


@contextmanager
def running(
    name: str, command: list[str], ready_path: str, port: int, env: dict[str, str], log_path: Path | None = None
) -> Iterator[Server]:
    """The server's output goes to ``log_path`` when given (to read its access log), else to a scratch file."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RESNET_")}
    log = log_path.open("wb") if log_path is not None else tempfile.TemporaryFile()
    process = subprocess.Popen(command, env={**clean, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_ready(url + ready_path, process, timeout=120)
        except RuntimeError:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
            raise
        yield Server(name, url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def baseline(model: Path) -> ExitStack:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(port), "--no-access-log"]
    return running("plain FastAPI", command, "/openapi.json", port, {"RESNET_BASELINE_MODEL": str(model)})


def service(
    model: Path, env: dict[str, str] | None = None, name: str = "resnet-service", log_path: Path | None = None
) -> ExitStack:
    port = free_port()
    command = [sys.executable, "-m", "resnet_service.process.cli", "serve", "--port", str(port), "--model", str(model)]
    return running(name, command, "/health/ready", port, env or {}, log_path)


def stack(model: Path, run_dir: Path, env: dict[str, str] | None = None) -> ExitStack:
    api_port, nginx_port = free_port(), free_port()
    command = [sys.executable, "scripts/stack.py", "--run-dir", str(run_dir), "--model", str(model)]
    command += ["--api-port", str(api_port), "--nginx-port", str(nginx_port)]
    return running("resnet-service via nginx", command, "/health/ready", nginx_port, env or {})


def measure(server: Server, body: Path, connections: int, seconds: float) -> dict[str, float]:
    pid = server.process.pid
    before = tree_cpu_seconds(pid)
    figures = wrk(server.url, body, connections, seconds)
    figures["server_cpu_ms_per_request"] = 1000 * (tree_cpu_seconds(pid) - before) / max(1, figures["requests"])
    return figures


def compare(
    servers: list[Server],
    body: Path,
    connections: tuple[int, ...],
    seconds: float,
    reps: int,
    raw: Callable[[], dict[str, float]] | None = None,
) -> tuple[dict[str, dict[int, list[dict[str, float]]]], list[dict[str, float]]]:
    """Every server at every concurrency, ``reps`` times, interleaved; the order alternates between repetitions.

    ``raw`` (raw ONNX Runtime, while the servers idle) runs once in every repetition too, so that the ratios to it
    compare figures taken at the same time on a machine whose speed drifts.
    """
    for server in servers:
        wrk(server.url, body, 8, 2)  # warm: connections, ONNX Runtime's arenas, the batch sizes 8 clients make
    runs: dict[str, dict[int, list[dict[str, float]]]] = {s.name: {c: [] for c in connections} for s in servers}
    raw_runs: list[dict[str, float]] = []
    for rep in range(reps):
        if raw is not None:
            raw_runs.append(raw())
            print(f"    rep {rep + 1} raw ONNX Runtime: {raw_runs[-1]}", flush=True)
        order = servers if rep % 2 == 0 else servers[::-1]
        for clients in connections:
            for server in order:
                figures = measure(server, body, clients, seconds)
                runs[server.name][clients].append(figures)
                print(
                    f"    rep {rep + 1} c={clients:<2} {server.name:<26} {figures['requests_per_s']:7.1f} req/s  "
                    f"p50 {figures['p50_ms']:6.1f} ms  non-2xx {figures['non_2xx']}",
                    flush=True,
                )
    return runs, raw_runs


def raw_best(model: Path, seconds: float) -> dict[str, float]:
    """Raw ONNX Runtime images/s at batch 1 and 8, the better of threads spinning or not."""
    rows = raw_onnxruntime(model, photo_jpeg(), seconds)
    return {f"batch {b}": round(max(r["images_per_s"] for r in rows if r["batch"] == b), 2) for b in (1, 8)}


def raw_medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def median_row(figures: list[dict[str, float]]) -> dict[str, float]:
    keys = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request", "load_cpu_ms_per_request")
    row = {key: statistics.median(f[key] for f in figures) for key in keys}
    row["runs"] = [round(f["requests_per_s"], 1) for f in figures]
    row["errors"] = sum(f["non_2xx"] + f["connect_errors"] + f["read_errors"] + f["timeouts"] for f in figures)
    return row


def print_table(title: str, runs: dict[str, dict[int, list[dict[str, float]]]], raw_best: float | None) -> None:
    print(f"\n{title}")
    header = f"  {'server':<26} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU/req ms':>11} {'wrk ms':>7}"
    print(header + ("  × raw best" if raw_best else "") + "  runs (req/s)")
    for name, by_clients in runs.items():
        for clients, figures in by_clients.items():
            row = median_row(figures)
            ratio = f"  {row['requests_per_s'] / raw_best:9.2f}×" if raw_best else ""
            print(
                f"  {name:<26} {clients:>5} {row['requests_per_s']:8.1f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} "
                f"{row['server_cpu_ms_per_request']:11.2f} {row['load_cpu_ms_per_request']:7.2f}{ratio}  "
                f"{row['runs']}" + (f"  ERRORS {row['errors']}" if row["errors"] else "")
            )


def ratio(runs: dict[str, dict[int, list[dict[str, float]]]], a: str, b: str, clients: int, key: str) -> float:
    return median_row(runs[a][clients])[key] / median_row(runs[b][clients])[key]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models/resnet50.onnx")
    parser.add_argument("--int8-model", type=Path, help="also compare on this INT8 model (export --quantize int8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per wrk run (default: 10)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions; medians are reported")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/path.json")
    args = parser.parse_args()
    connections = (1, 8)
    result: dict[str, object] = {**provenance(), "seconds": args.seconds, "reps": args.reps}
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        body = scratch_dir / "body.bin"
        body.write_bytes(multipart(photo_jpeg()))
        null = write_null_model(scratch_dir / "null.onnx")
        models = {"null model": (null, False), "fp32 ResNet-50": (args.model, True)}
        if args.int8_model:
            models["INT8 ResNet-50"] = (args.int8_model, True)
        for label, (model, behind_nginx) in models.items():
            print(f"{label}: {model}", flush=True)
            with ExitStack() as servers:
                started = [servers.enter_context(baseline(model)), servers.enter_context(service(model))]
                if label != "INT8 ResNet-50":
                    workers = service(model, {"RESNET_WORKERS": "2"}, name="resnet-service, 2 workers")
                    started.append(servers.enter_context(workers))
                if behind_nginx:
                    started.append(servers.enter_context(stack(model, scratch_dir / f"stack-{len(result)}")))
                raw = (lambda m=model: raw_best(m, args.seconds / 2)) if behind_nginx else None
                result[label], raw_runs = compare(started, body, connections, args.seconds, args.reps, raw)
                if raw_runs:
                    result.setdefault("raw_onnxruntime", {})[label] = raw_medians(raw_runs)
                    result.setdefault("raw_onnxruntime_runs", {})[label] = raw_runs
        print("profiling the service on the null model at 8 connections …", flush=True)
        with service(null) as server:
            wrk(server.url, body, 8, 2)
            load = lambda: measure(server, body, 8, args.seconds)  # noqa: E731 - run twice by the profiler
            result["profile"] = profile_service(server.process.pid, load, args.seconds)
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {args.out}")
    return 0


def report(result: dict) -> None:
    cpu = result["cpu"]
    flags = ", ".join(cpu["flags"])
    print(f"\n=== request path: commit {result['commit']}, {cpu['model']} ({cpu['cpus']} CPUs, {flags})")
    print(f"    wrk, one 451×300 JPEG, {result['seconds']:.0f} s per run, medians of {result['reps']} interleaved runs")
    raw = result["raw_onnxruntime"]
    for label in ("null model", "fp32 ResNet-50", "INT8 ResNet-50"):
        if label not in result:
            continue
        best = max(raw[label].values()) if label in raw else None
        if best:
            shown = ", ".join(f"{key} {value:.1f}/s" for key, value in raw[label].items())
            print(f"\n  raw ONNX Runtime, {label}: {shown}")
        print_table(label, result[label], best)
    print("\n=== targets")
    null = result["null model"]
    print(
        f"  null model, 8 conns: service / plain FastAPI = "
        f"{ratio(null, 'resnet-service', 'plain FastAPI', 8, 'requests_per_s'):.2f}× req/s (target ≥ 1.10×)"
    )
    p50 = median_row(null["resnet-service"][1])["p50_ms"], median_row(null["plain FastAPI"][1])["p50_ms"]
    print(f"  null model, 1 conn: p50 {p50[0]:.2f} ms vs plain FastAPI {p50[1]:.2f} ms (target: no higher)")
    fp32 = result["fp32 ResNet-50"]
    best = max(raw["fp32 ResNet-50"].values())
    via = median_row(fp32["resnet-service via nginx"][8])["requests_per_s"]
    plain = median_row(fp32["plain FastAPI"][8])["requests_per_s"]
    print(
        f"  fp32, 8 conns via nginx: {via:.1f}/s = {via / best:.2f}× raw best {best:.1f}/s (target ≥ 0.95×); "
        f"plain FastAPI direct {plain:.1f}/s"
    )
    for label in ("null model", "fp32 ResNet-50"):
        two = ratio(result[label], "resnet-service, 2 workers", "resnet-service", 8, "requests_per_s")
        print(f"  {label}, 8 conns: --workers 2 / one process = {two:.2f}× req/s (2 cores: one process uses both)")
    if "INT8 ResNet-50" in result:
        int8 = median_row(result["INT8 ResNet-50"]["resnet-service"][8])["requests_per_s"]
        raw8 = raw["INT8 ResNet-50"]["batch 8"]
        print(f"  INT8, 8 conns: {int8:.1f}/s = {int8 / raw8:.2f}× raw INT8 batch 8 {raw8:.1f}/s (target ≥ 0.85×)")
    profile = result["profile"]
    print(f"\n=== where the service's CPU goes: null model, 8 connections, py-spy ({profile['samples']} samples)")
    per_request = profile["cpu_ms_per_request"]
    print(f"  {per_request:.2f} ms of CPU per request in all; by stage:")
    for stage, share in profile["shares"].items():
        print(f"    {stage:<40} {100 * share:5.1f}%  {share * per_request:5.2f} ms")
    gil = profile.get("gil_ms_per_request")
    if gil:
        print(
            f"  GIL held {gil:.2f} ms per request: one process cannot pass about {1000 / gil:.0f} requests/s "
            "however many cores it has; --workers N multiplies that"
        )


if __name__ == "__main__":
    sys.exit(main())
