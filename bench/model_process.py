"""One worker, RESNET_WORKERS=2 as full replicas, and the same two workers on one model process
(RESNET_MODEL_PROCESS), in interleaved rounds: requests/s, latency, and the memory of each whole process tree; medians.

    .venv/bin/python -m bench.model_process --model models/resnet50.onnx [--seconds 8] [--reps 3] [--clients 1,8]

All three servers are up at once and driven by wrk with the typical photo (a 451×300 JPEG), direct to uvicorn. The
model process is for a GPU, where one model copy and batches filled from every worker matter; on a CPU this
measures what the hop through shared memory costs.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Any

from bench.path import descendants
from bench.quick import multipart, rss_mb, start_server
from bench.run import photos, provenance, wrk
from bench.side_by_side import arguments, interleave, medians_table, save

VARIANTS = {
    "1 worker": {"RESNET_WORKERS": "1"},
    "2 full replicas": {"RESNET_WORKERS": "2"},
    "2 workers, 1 model process": {"RESNET_WORKERS": "2", "RESNET_MODEL_PROCESS": "true"},
}


def tree_rss_mb(pid: int) -> float:
    """The resident memory of ``pid`` and every process under it."""
    return sum(rss_mb(member) for member in descendants(pid))


def main() -> int:
    args = arguments(__doc__.splitlines()[0], "model_process.json")
    result: dict[str, Any] = {**provenance(), "seconds_per_point": args.seconds, "reps": args.reps}
    with tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "body.bin"
        body.write_bytes(multipart(photos()["typical 451x300"]))
        servers = {name: start_server(args.model, env) for name, env in VARIANTS.items()}
        try:
            for _, url, _ in servers.values():
                wrk(url, body, 2, 2)  # warm the connections, the arenas and both workers
            result["rss_mb"] = {name: round(tree_rss_mb(process.pid), 1) for name, (process, _, _) in servers.items()}
            result["runs"] = interleave(
                list(VARIANTS),
                args.clients,
                args.reps,
                lambda name, count: wrk(servers[name][1], body, count, args.seconds),
            )
        finally:
            for process, _, _ in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    save(args.out, result)
    print(f"memory of the whole process tree, MB: {result['rss_mb']}")
    print(medians_table(result, "variant"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
