"""RESNET_WORKERS > 1: full replicas of the service in worker processes sharing one listening socket.

One Python process holds the GIL for about 2 ms of every request (HTTP, multipart, the event loop, the Python
around each decode), so it tops out at a few hundred requests a second however many cores the machine has.
Workers multiply that. Each is a whole service, with its own model session, batcher and queue, spawned by
uvicorn's supervisor: the parent binds the socket, the kernel hands each new connection to whichever worker
accepts it, and the supervisor replaces a worker that dies. Full replicas beat HTTP processes feeding one model
process on CPU: batching gains little there (batch 8 ran 1.1–1.2× batch 1's images/s), while a hop to another
process would cost a copy of every tensor and a second queue; a model copy per worker is 100 MB (fp32) or 26 MB
(INT8).

The parent hands the workers its settings as RESNET_* variables (so ``--model`` and every default computed here
reach them unchanged) and a fresh PROMETHEUS_MULTIPROC_DIR, through which ``/metrics`` adds up all the workers.
On SIGTERM or Ctrl-C it tells every worker to stop; each stops accepting, finishes the requests it holds (in
flight and queued, up to RESNET_SHUTDOWN_GRACE_S) and exits, and then the parent exits 0. If a worker cannot
start (no model file, say), the supervisor stops them all and the exit status is 3, as with one process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from resnet_service.exit_status import STARTUP_FAILURE
from resnet_service.settings import Settings

__all__ = ["serve_workers"]

PROMETHEUS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, which also closes its own copy of the listening socket when told to stop.

    The workers close theirs as they start draining; with the parent's closed too, new connections are refused at
    once (so a load balancer moves on), instead of waiting in the backlog of a socket nobody accepts on.
    """

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    def handle_term(self) -> None:
        self._close_sockets()
        super().handle_term()

    def handle_int(self) -> None:
        self._close_sockets()
        super().handle_int()


def serve_workers(settings: Settings, host: str, port: int, log_level: str, log_config: dict[str, Any]) -> int:
    """Serve with ``settings.workers`` processes until stopped; the exit status, as ``server.serve`` gives it."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="resnet-service-metrics-"))
    settings = settings.model_copy(update={"metrics_multiprocess_dir": metrics_dir})
    # Spawned workers start with this process's environment and build their Settings from it.
    os.environ.update(settings.environment())
    config = uvicorn.Config(
        "resnet_service.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        log_level=log_level,
        log_config=log_config,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    supervisor = _Supervisor(config, sockets=[config.bind_socket()])
    try:
        supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    return STARTUP_FAILURE if failed else 0
