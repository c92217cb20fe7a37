"""uvicorn, stopped the way Kubernetes and Compose stop a container: drain, then exit 0.

On SIGTERM or Ctrl-C, readiness turns 503 at once (so load balancers stop sending), uvicorn closes its listening
socket (new connections are refused), the requests in flight and in the batcher's queue finish, and the process
exits 0. Whatever is still running after ``RESNET_SHUTDOWN_GRACE_S`` is cancelled.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn
from fastapi import FastAPI

from resnet_service.core.exit_status import STARTUP_FAILURE
from resnet_service.core.settings import Settings
from resnet_service.web.runtime import runtime_of

__all__ = ["DrainingServer", "serve"]

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime = runtime_of(self._app)
        if runtime.stop_accepting():
            logger.info(
                "%s: readiness is now 503; draining the requests in flight (%d waiting for a model)",
                signal.Signals(sig).name,
                sum(runtime.models.depths().values()) if runtime.models is not None else 0,
            )
        super().handle_exit(sig, frame)


def serve(app: FastAPI, settings: Settings, host: str, port: int, log_level: str, log_config: dict) -> int:
    """Serve until stopped; the exit status: 0 after a drain, STARTUP_FAILURE if the model never loaded."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config,
        # The service writes its own access line per request, with timings and the request id.
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    server = DrainingServer(config, app)
    # uvicorn re-raises the signal once it has drained, so the default handlers would end a clean stop with
    # status 143 (SIGTERM) or a KeyboardInterrupt traceback (Ctrl-C). These handlers, which uvicorn restores
    # around its own, make that re-raise (and a signal that arrives before uvicorn listens) a request to stop
    # instead, so a drained server exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, server.handle_exit)
    server.run()
    return 0 if server.started else STARTUP_FAILURE
