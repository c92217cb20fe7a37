"""RESNET_WORKERS > 1: full replicas of the service in worker processes sharing one listening socket.

One Python process holds the GIL for about 2 ms of every request (HTTP, multipart, the event loop, the Python
around each decode), so it tops out at a few hundred requests a second however many cores the machine has.
Workers multiply that. Each is a whole service, with its own model session, batcher and queue, spawned by
uvicorn's supervisor: the parent binds the socket, the kernel hands each new connection to whichever worker
accepts it, and the supervisor replaces a worker that dies. Full replicas beat HTTP processes feeding one model
process on CPU: batching gains little there (batch 8 ran 1.1–1.2× batch 1's images/s), while a hop to another
process would cost a copy of every tensor and a second queue; a model copy per worker is 100 MB (fp32) or 26 MB
(INT8).

With RESNET_MODEL_PROCESS the parent first starts one more process, the model process
(``inference.model_process.host``), which holds every model once and runs all the workers' batches; each worker's
models stand in for it. It stops after the workers have drained. If it dies, the parent stops the workers and exits
4 (MODEL_PROCESS_LOST).

The parent hands the workers its settings as RESNET_* variables (so ``--model`` and every default computed here
reach them unchanged) and a fresh PROMETHEUS_MULTIPROC_DIR, through which ``/metrics`` adds up all the workers.
On SIGTERM or Ctrl-C it tells every worker to stop; each stops accepting, finishes the requests it holds (in
flight and queued, up to RESNET_SHUTDOWN_GRACE_S) and exits, and then the parent exits 0. If a worker cannot
start (no model file, say), the supervisor stops them all and the exit status is 3, as with one process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from resnet_service.core.errors import StartupError
from resnet_service.core.exit_status import MODEL_PROCESS_LOST, STARTUP_FAILURE
from resnet_service.core.settings import Settings, available_cpus
from resnet_service.inference.model_process.host import run_host

__all__ = ["serve_workers"]

PROMETHEUS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger(__name__)


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

    model_process: BaseProcess | None = None
    model_process_lost = False

    def keep_subprocess_alive(self) -> None:
        # Workers cannot serve without the model process: stop them all, so that whatever runs this (Compose,
        # Kubernetes, systemd) starts the service afresh.
        if self.model_process is not None and not self.model_process.is_alive() and not self.should_exit.is_set():
            logger.error("the model process exited (status %s); stopping the workers", self.model_process.exitcode)
            self.model_process_lost = True
            self._close_sockets()
            self.should_exit.set()
            return
        super().keep_subprocess_alive()


def _start_model_process(settings: Settings, run_dir: Path, log_config: dict[str, Any]) -> tuple[BaseProcess, Path]:
    """The one process that holds the models (RESNET_MODEL_PROCESS), once its socket accepts connections."""
    socket_path = run_dir / "model.sock"
    # The one model gets every CPU the workers would have divided among their copies.
    threads = settings.intra_op_threads if "intra_op_threads" in settings.model_fields_set else available_cpus()
    host_settings = settings.model_copy(update={"intra_op_threads": threads})
    process = multiprocessing.get_context("spawn").Process(
        target=run_host, args=(host_settings, socket_path, log_config), name="model-process", daemon=False
    )
    process.start()
    deadline = time.monotonic() + 60
    while not socket_path.exists():
        if not process.is_alive() or time.monotonic() > deadline:
            process.kill()
            raise StartupError(f"the model process did not start (exit status {process.exitcode})")
        time.sleep(0.02)
    return process, socket_path


def serve_workers(settings: Settings, host: str, port: int, log_level: str, log_config: dict[str, Any]) -> int:
    """Serve with ``settings.workers`` processes until stopped; the exit status, as ``server.serve`` gives it."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="resnet-service-metrics-"))
    settings = settings.model_copy(update={"metrics_multiprocess_dir": metrics_dir})
    model_process = None
    if settings.model_process:
        os.environ[PROMETHEUS_DIR_VARIABLE] = str(metrics_dir)
        try:
            model_process, socket_path = _start_model_process(settings, metrics_dir, log_config)
        except StartupError as exc:
            logger.error("%s", exc)
            shutil.rmtree(metrics_dir, ignore_errors=True)
            return STARTUP_FAILURE
        settings = settings.model_copy(update={"model_process_socket": socket_path})
    # Spawned workers start with this process's environment and build their Settings from it.
    os.environ.update(settings.environment())
    config = uvicorn.Config(
        "resnet_service.app:create_app",
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
    supervisor.model_process = model_process
    try:
        supervisor.run()
    finally:
        if model_process is not None:
            # After the workers: they drained their requests on these models.
            model_process.terminate()
            model_process.join(timeout=30)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if supervisor.model_process_lost:
        return MODEL_PROCESS_LOST
    failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    return STARTUP_FAILURE if failed else 0
