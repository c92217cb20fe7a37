"""create_app(settings): everything the service mounts, and the lifespan that loads the model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from resnet_service import __version__
from resnet_service.auth import UNAUTHORIZED_RESPONSE, api_key_guard
from resnet_service.batcher import DynamicBatcher
from resnet_service.decode_gate import DecodeGate
from resnet_service.docs import install_docs
from resnet_service.engine import CPU, CudaOptions, Engine
from resnet_service.errors import StartupError, install_error_handlers
from resnet_service.labels import Labels
from resnet_service.metrics import Metrics
from resnet_service.observe import ObserveMiddleware
from resnet_service.pipeline import Pipeline
from resnet_service.request_id import RequestIdMiddleware
from resnet_service.routes import demo, health, predict, v2
from resnet_service.routes import metrics as metrics_route
from resnet_service.settings import Settings
from resnet_service.url_fetch import UrlPolicy
from resnet_service.v2_schemas import V2_MODEL_NAME

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
ResNet-50 (ImageNet) behind an HTTP API: ONNX Runtime instead of TensorFlow, the seed's `/predict` unchanged.

`curl -F image=@dog.jpg http://localhost:8000/predict`
"""


def _lifespan(settings: Settings):  # noqa: ANN202 - FastAPI's lifespan type is a long generic
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A model that fails to load raises here, so the server exits instead of serving 503s forever.
        try:
            engine = Engine.load(
                settings.model_path,
                device=settings.device,
                intra_op_threads=settings.intra_op_threads,
                inference_threads=settings.inference_threads,
                spinning=settings.intra_op_spinning,
                batch_sizes=settings.batch_sizes,
                max_batch_size=settings.max_batch_size,
                cuda=CudaOptions(settings.cuda_conv_algo_search, settings.cuda_graphs, settings.cuda_prefer_nhwc),
            )
            try:
                app.state.labels = Labels.for_model(engine.metadata, engine.classes, engine.path)
            except StartupError:
                engine.close()
                raise
        except StartupError as exc:
            # One plain line that names the file and the fix, above the traceback uvicorn prints.
            logger.error("cannot start: %s", exc)
            raise
        preprocess_pool = ThreadPoolExecutor(max_workers=settings.preprocess_threads, thread_name_prefix="preprocess")
        # A model on a GPU leaves the CPU to decoding, so only a CPU model holds decoding back while it runs.
        threads = settings.preprocess_threads
        gate = DecodeGate(threads, max(1, threads - 1) if engine.provider == CPU else threads)
        engine.gate = gate
        app.state.engine = engine
        app.state.preprocess_pool = preprocess_pool
        metrics: Metrics = app.state.metrics
        batcher = DynamicBatcher(
            engine.run,
            settings.max_batch_size,
            settings.batch_timeout_ms,
            max_queue=settings.max_queue,
            observe_batch=metrics.observe_batch,
        )
        app.state.batcher = batcher
        app.state.pipeline = Pipeline(batcher, preprocess_pool, settings, metrics, gate)
        if metrics.multiprocess_dir is None:
            metrics.watch_queue(lambda: batcher.waiting)
            publisher = None
        else:
            publisher = asyncio.get_running_loop().create_task(metrics.publish_queue_depth(lambda: batcher.waiting))
        metrics.describe_model(
            {
                "name": V2_MODEL_NAME,
                "path": str(engine.path),
                "weights": engine.weights,
                "random_weights": str(engine.random_weights).lower(),
                "provider": engine.provider,
            }
        )
        try:
            await engine.warm_up()
            if engine.random_weights:
                logger.warning("the model at %s has RANDOM weights: its predictions are meaningless", engine.path)
            batcher.start()
            app.state.status = "ready"
            yield
        finally:
            app.state.status = "stopping"
            if publisher is not None:
                publisher.cancel()
            await batcher.stop()
            preprocess_pool.shutdown(wait=True)
            engine.close()
            metrics.close()

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; ``settings`` defaults to the ``RESNET_*`` environment."""
    settings = settings if settings is not None else Settings()
    app = FastAPI(
        title="resnet-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(settings),
        # Served by install_docs from the installed package, never from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.status = "starting"
    app.state.engine = None
    app.state.batcher = None
    app.state.pipeline = None
    app.state.labels = Labels.load()
    app.state.url_policy = UrlPolicy.from_entries(
        settings.url_inputs, settings.url_allowed_hosts, settings.url_timeout_s, settings.max_upload_bytes
    )
    app.state.metrics = Metrics(settings.metrics_multiprocess_dir)
    install_error_handlers(app)
    # The last added runs first: the request id exists before the observer logs it.
    app.add_middleware(ObserveMiddleware, metrics=app.state.metrics, routes=app.router.routes)
    app.add_middleware(RequestIdMiddleware)
    # Only the inference routes need a key: health and metrics stay open for probes and scrapers.
    guarded = {"dependencies": [Depends(api_key_guard(settings.api_keys))], "responses": UNAUTHORIZED_RESPONSE}
    inference = guarded if settings.api_keys else {}
    app.include_router(predict.router, **inference)
    app.include_router(v2.router, **inference)
    app.include_router(v2.health_router)
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    app.include_router(demo.router)
    install_docs(app)
    return app
