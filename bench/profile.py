"""Where a server's CPU goes, from py-spy samples of its threads: a share per stage of the request path.

Each sample is put in the stage of its innermost recognised frame, so PIL's resize inside ``to_model_input`` counts
as resize, and uvicorn's socket write inside the access-log middleware counts as HTTP.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

__all__ = ["classify", "profile_service"]

RATE_HZ = 200

# (stage, substrings of a py-spy frame "function (file:line)"), tried on each frame from the innermost outwards.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model (ONNX Runtime)", ("onnxruntime/", "run_sync (resnet_service/inference/engine.py")),
    ("resize (Pillow bicubic)", ("resize (PIL/Image.py",)),
    ("normalise (BGR, float32, mean)", ("to_model_input", "merge (PIL/Image.py", "split (PIL/Image.py", "numpy/")),
    ("decode (Pillow, libjpeg-turbo)", ("PIL/",)),
    (
        "logs and metrics",
        ("prometheus_client/", "logging/", "resnet_service/core/log.py", "resnet_service/web/observe.py"),
    ),
    ("multipart", ("python_multipart/", "resnet_service/web/upload.py")),
    (
        "batching and thread hops",
        (
            "resnet_service/inference/batcher.py",
            "concurrent/futures/",
            "threading.py",
            "queue.py",
            "anyio/",
            "asyncio/futures",
        ),
    ),
    ("HTTP and framework", ("uvicorn/", "starlette/", "fastapi/", "pydantic", "httptools", "json/")),
    ("service code (routes, pipeline, labels)", ("resnet_service/",)),
)
EVENT_LOOP = "event loop and sockets (uvloop)"


def classify(stack: list[str]) -> str:
    for frame in reversed(stack):
        for stage, needles in STAGES:
            if any(needle in frame for needle in needles):
                return stage
    return EVENT_LOOP


def _record(pid: int, seconds: int, out: Path, gil: bool) -> subprocess.Popen[bytes]:
    command = ["py-spy", "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--duration", str(seconds)]
    command += ["--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command + (["--gil"] if gil else []), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _samples(path: Path) -> Counter[str]:
    stages: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        # The first frame names the thread; the rest run from the outermost call inwards.
        stages[classify(stack.split(";")[1:])] += int(count)
    return stages


def _sampled(pid: int, load: Callable[[], dict], seconds: float, out: Path, gil: bool) -> tuple[Counter[str], dict]:
    """py-spy records for ``seconds`` - 2 while ``load`` runs for ``seconds``, so the window is all under load."""
    window = max(1, round(seconds) - 2)
    spy = _record(pid, window, out, gil)
    figures = load()
    _, errors = spy.communicate(timeout=60)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {errors.decode(errors='replace').strip()}")
    return _samples(out), {**figures, "window_s": window}


def profile_service(pid: int, load: Callable[[], dict], seconds: float) -> dict[str, object]:
    """Run ``load`` (wrk for ``seconds``, returning its figures) twice under py-spy: every sample, then GIL holders.

    Returns each stage's share of the sampled CPU, the CPU per request the load measured, and the GIL time per
    request: samples in which some thread held the GIL, over the requests answered in the sampled window.
    """
    if shutil.which("py-spy") is None:
        raise SystemExit("bench: py-spy is not installed; pip install py-spy (the bench extra has it)")
    with tempfile.TemporaryDirectory() as scratch:
        stages, figures = _sampled(pid, load, seconds, Path(scratch) / "all.txt", gil=False)
        held, gil_figures = _sampled(pid, load, seconds, Path(scratch) / "gil.txt", gil=True)
    total = sum(stages.values())
    requests_in_window = gil_figures["requests_per_s"] * gil_figures["window_s"]
    return {
        "samples": total,
        "shares": {stage: count / total for stage, count in stages.most_common()},
        "cpu_ms_per_request": figures["server_cpu_ms_per_request"],
        "requests_per_s": figures["requests_per_s"],
        "gil_ms_per_request": 1000 * sum(held.values()) / RATE_HZ / requests_in_window,
        "gil_shares": {stage: count / max(1, sum(held.values())) for stage, count in held.most_common()},
    }
