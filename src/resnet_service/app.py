"""create_app(settings): everything the service mounts, and the lifespan that loads the model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import onnxruntime as ort
from fastapi import Depends, FastAPI

from resnet_service.api.docs import install_docs, list_models_in_openapi
from resnet_service.api.routes import demo, health, models, predict
from resnet_service.api.routes import metrics as metrics_route
from resnet_service.core.errors import StartupError
from resnet_service.core.settings import Settings
from resnet_service.core.tracing import UNTRACED_PATHS, Tracing
from resnet_service.core.version import __version__
from resnet_service.inference.decode_gate import DecodeGate
from resnet_service.inference.engine import CPU, choose_providers
from resnet_service.inference.model_repository import ModelRepository
from resnet_service.v2 import routes as v2
from resnet_service.web.auth import UNAUTHORIZED_RESPONSE, api_key_guard
from resnet_service.web.error_answers import install_error_handlers
from resnet_service.web.observe import ObserveMiddleware
from resnet_service.web.request_id import RequestIdMiddleware
from resnet_service.web.runtime import Runtime, Status

if TYPE_CHECKING:
    import grpc
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Image classifiers exported from Keras (ResNet-50 and the ImageNet classes by default, or your own) behind an HTTP
API, run by ONNX Runtime, with the Flask + Keras tutorial's `/predict` unchanged.

`curl -F image=@dog.jpg http://localhost:8000/predict`
"""


def _decode_gate(settings: Settings) -> DecodeGate:
    # A model on a GPU leaves the CPU to decoding, so only a CPU model holds decoding back while it runs.
    threads = settings.preprocess_threads
    on_cpu = choose_providers(settings.device, ort.get_available_providers())[0] == CPU
    return DecodeGate(threads, max(1, threads - 1) if on_cpu else threads)


def _lifespan(runtime: Runtime):  # noqa: ANN202 - FastAPI's lifespan type is a long generic
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings, metrics = runtime.settings, runtime.metrics
        preprocess_pool = ThreadPoolExecutor(max_workers=settings.preprocess_threads, thread_name_prefix="preprocess")
        models: ModelRepository | None = None
        tasks: list[asyncio.Task[None]] = []
        grpc_server: grpc.aio.Server | None = None
        try:
            # A model that fails to load raises here, so the server exits instead of serving 503s forever.
            try:
                tracer = runtime.tracing.tracer if runtime.tracing is not None else None
                models = ModelRepository(settings, metrics, preprocess_pool, _decode_gate(settings), tracer)
                await models.start()
                runtime.models = models
                if settings.grpc_port is not None:
                    # Imported here: grpcio and the protocol's modules load only when gRPC is on.
                    from resnet_service.v2.grpc_service import start_grpc_server

                    grpc_server = await start_grpc_server(runtime)
            except StartupError as exc:
                # One plain line that names the file and the fix, above the traceback uvicorn prints.
                logger.error("cannot start: %s", exc)
                raise
            loop = asyncio.get_running_loop()
            if metrics.multiprocess_dir is not None:
                tasks.append(loop.create_task(metrics.publish_queue_depths(models.depths)))
            if settings.model_dir is not None and settings.model_poll_s > 0:
                tasks.append(loop.create_task(models.watch(settings.model_poll_s), name="model-folder-watcher"))
            runtime.status = Status.READY
            yield
        finally:
            runtime.status = Status.STOPPING
            if grpc_server is not None:
                # Calls in flight finish, as HTTP's do, within the shutdown grace.
                await grpc_server.stop(settings.shutdown_grace_s)
            for task in tasks:
                task.cancel()
            if models is not None:
                await models.close()
            preprocess_pool.shutdown(wait=True)
            metrics.close()
            if runtime.tracing is not None:
                runtime.tracing.shutdown()

    return lifespan


def create_app(settings: Settings | None = None, *, span_exporter: SpanExporter | None = None) -> FastAPI:
    """The ASGI app; ``settings`` defaults to the ``RESNET_*`` environment.

    ``span_exporter`` receives the traces instead of RESNET_OTEL_ENDPOINT, and turns them on without it.
    """
    settings = settings if settings is not None else Settings()
    runtime = Runtime.build(settings, span_exporter)
    app = FastAPI(
        title="resnet-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(runtime),
        # Served by install_docs from the installed package, never from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    # The last added runs first: the request id exists before the observer logs it.
    app.add_middleware(ObserveMiddleware, metrics=runtime.metrics, routes=app.router.routes)
    app.add_middleware(RequestIdMiddleware, traced=runtime.tracing is not None)
    # Only the inference routes need a key: health and metrics stay open for probes and scrapers.
    guarded = {"dependencies": [Depends(api_key_guard(settings.api_keys))], "responses": UNAUTHORIZED_RESPONSE}
    inference = guarded if settings.api_keys else {}
    app.include_router(predict.router, **inference)
    app.include_router(v2.router, **inference)
    app.include_router(v2.health_router)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(metrics_route.router)
    app.include_router(demo.router)
    install_docs(app)
    list_models_in_openapi(app, lambda: runtime.models)
    if runtime.tracing is not None:
        _trace_requests(app, runtime.tracing)
    return app


def _trace_requests(app: FastAPI, tracing: Tracing) -> None:
    """One server span per request, outside every middleware, continuing the client's W3C traceparent."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracing.provider,
        excluded_urls=UNTRACED_PATHS,
        # A span for every ASGI message sent or received would outnumber the stages worth seeing.
        exclude_spans=["receive", "send"],
    )
