"""The models one process serves, by name, and how they are loaded, swapped and unloaded without downtime.

Each model has its own engine, batcher (so its own queue bound) and pipeline; the preprocessing pool and the
decode gate are shared. A load builds and warms the new version beside the old one, then moves the name over in
one step on the event loop: requests that started on the old version finish on it, and it is closed once the
last of them is done. A load that fails leaves the old version serving and records why, for /health, the log
and the repository index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from resnet_service.core.errors import (
    ModelControlRefused,
    ModelLoadFailed,
    ModelNotFound,
    ModelNotReady,
    ServiceError,
    StartupError,
)
from resnet_service.core.metrics import Metrics
from resnet_service.core.settings import Settings
from resnet_service.inference.batcher import DynamicBatcher
from resnet_service.inference.decode_gate import DecodeGate
from resnet_service.inference.engine import Engine, load_engine
from resnet_service.inference.model_contract import ContractDefaults
from resnet_service.inference.model_process.remote_engine import RemoteEngine
from resnet_service.inference.pipeline import Pipeline

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from resnet_service.inference.stage_spans import StageSpans

__all__ = ["LoadFailure", "ModelRepository", "ServedModel", "scan_models"]

logger = logging.getLogger(__name__)

# (path, inode, modification time in ns, size): a file is loaded again only when this changes. The inode catches a
# file renamed over another with the same size and time (cp -p, then mv).
Signature = tuple[str, int, int, int]


def _signature(path: Path) -> Signature | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)


def scan_models(directory: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The models in a folder: each .onnx file by its stem, each subfolder holding one .onnx file by its name.

    Returns them with the problems found (a subfolder with no .onnx file or several), by name.
    """
    if not directory.is_dir():
        raise StartupError(f"RESNET_MODEL_DIR {directory} is not a folder")
    found: dict[str, Path] = {}
    problems: dict[str, str] = {}
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue  # editors' and copy tools' temporary files
        if entry.is_file() and entry.suffix == ".onnx":
            found[entry.stem] = entry
        elif entry.is_dir():
            files = sorted(entry.glob("*.onnx"))
            if len(files) == 1:
                found[entry.name] = files[0]
            else:
                problems[entry.name] = f"{entry} holds {len(files)} .onnx files; a model's folder holds exactly one"
    return found, problems


class ServedModel:
    """One loaded version of a model, and the requests using it."""

    def __init__(
        self, name: str, version: int, signature: Signature | None, engine: Engine | RemoteEngine, pipeline: Pipeline
    ) -> None:
        self.name = name
        self.version = version
        self.signature = signature
        self.engine = engine
        self.pipeline = pipeline
        self.loaded_at = time.time()
        self._users = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def batcher(self) -> DynamicBatcher:
        return self.pipeline.batcher

    def acquire(self) -> None:
        self._users += 1
        self._idle.clear()

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self._idle.set()

    async def retire(self, grace_s: float) -> None:
        """Close this version once the requests that started on it are done (or ``grace_s`` has passed)."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            logger.warning(
                "model %s version %d still had %d requests after %.0f s; closing it under them",
                self.name,
                self.version,
                self._users,
                grace_s,
            )
        await self.batcher.stop()
        await asyncio.to_thread(self.engine.close)
        logger.info("closed model %s version %d", self.name, self.version)


@dataclass(frozen=True)
class LoadFailure:
    message: str
    signature: Signature | None
    at: float


class ModelRepository:
    """Name → the version being served; loads, swaps and unloads; watches RESNET_MODEL_DIR."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        preprocess_pool: ThreadPoolExecutor,
        gate: DecodeGate,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.preprocess_pool = preprocess_pool
        self.gate = gate
        # Set only when traces are on: without it no stage makes a span, and OpenTelemetry is never imported.
        self.tracer = tracer
        self.models: dict[str, ServedModel] = {}
        self.failures: dict[str, LoadFailure] = {}
        # RESNET_DEFAULT_MODEL chooses among a folder's models; a single file is served under RESNET_MODEL_NAME.
        self.default_name = settings.model_name
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._defaults = ContractDefaults(settings.preprocessing, settings.labels)

    def _stage_spans(self, name: str) -> StageSpans | None:
        if self.tracer is None:
            return None
        from resnet_service.inference.stage_spans import StageSpans

        return StageSpans(self.tracer, name)

    def sources(self) -> tuple[dict[str, Path], dict[str, str]]:
        if self.settings.model_dir is None:
            return {self.settings.model_name: self.settings.model_path}, {}
        return scan_models(self.settings.model_dir)

    async def start(self) -> None:
        """Load every model before the service is ready; any that cannot load stops the start (exit 3)."""
        sources, problems = self.sources()
        if problems:
            raise StartupError("; ".join(problems.values()))
        if not sources:
            raise StartupError(f"RESNET_MODEL_DIR {self.settings.model_dir} holds no .onnx file and no model folder")
        if self.settings.model_dir is not None:
            self.default_name = self.settings.default_model or min(sources)
        if self.default_name not in sources:
            raise StartupError(
                f"RESNET_DEFAULT_MODEL={self.default_name}, but {self.settings.model_dir} holds only "
                f"{', '.join(sorted(sources))}"
            )
        for name, path in sorted(sources.items()):
            await self._load(name, path)

    @contextmanager
    def use(self, name: str | None) -> Iterator[ServedModel]:
        """The version serving ``name`` (None: the default model), held until the request is done with it."""
        served = self.get(name)
        served.acquire()
        try:
            yield served
        finally:
            served.release()

    def get(self, name: str | None) -> ServedModel:
        if not self.models:
            raise ModelNotReady("the model is still loading; retry when /health/ready answers 200")
        served = self.models.get(name or self.default_name)
        if served is None:
            raise ModelNotFound(f"no model named {name!r}; this server serves {', '.join(sorted(self.models))}")
        return served

    def in_order(self) -> list[ServedModel]:
        """The models being served, the default first, then by name: as /health, /models and the docs list them."""
        return sorted(self.models.values(), key=lambda served: (served.name != self.default_name, served.name))

    @property
    def default(self) -> ServedModel | None:
        return self.models.get(self.default_name)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def load(self, name: str) -> ServedModel:
        """Load (or reload) ``name`` from its file and swap it in; on failure the old version keeps serving."""
        sources, problems = self.sources()
        if name in problems:
            raise ModelLoadFailed(problems[name])
        if name not in sources:
            where = self.settings.model_dir or self.settings.model_path
            raise ModelNotFound(f"no model named {name!r} in {where}")
        async with self._lock(name):
            try:
                return await self._load(name, sources[name])
            except (StartupError, ServiceError) as exc:
                message = exc.message if isinstance(exc, ServiceError) else str(exc)
                self.failures[name] = LoadFailure(message, _signature(sources[name]), time.time())
                serving = self.models.get(name)
                still = f"; version {serving.version} keeps serving" if serving else ""
                logger.error("model %s failed to load%s: %s", name, still, message)
                raise ModelLoadFailed(f"model {name} failed to load{still}: {message}") from exc

    async def _load(self, name: str, path: Path) -> ServedModel:
        started = time.perf_counter()
        signature = _signature(path)
        settings = self.settings
        engine: Engine | RemoteEngine
        if settings.model_process_socket is not None:
            engine = await RemoteEngine.open(settings.model_process_socket, path, self._defaults)
        else:
            engine = await asyncio.to_thread(load_engine, path, settings, self._defaults)
            engine.gate = self.gate
        model_metrics = self.metrics.for_model(name)
        spans = self._stage_spans(name)
        batcher = DynamicBatcher(
            engine.run,
            settings.max_batch_size,
            settings.batch_timeout_ms,
            max_queue=settings.max_queue,
            observe_batch=model_metrics.observe_batch,
            observe_abandoned=model_metrics.observe_abandoned,
            spans=spans,
            max_in_flight=engine.in_flight,
        )
        pipeline = Pipeline(
            batcher, self.preprocess_pool, settings, model_metrics, self.gate, engine.contract.input, spans
        )
        try:
            await engine.warm_up()
        except BaseException:
            await asyncio.to_thread(engine.close)
            raise
        batcher.start()
        old = self.models.get(name)
        served = ServedModel(name, old.version + 1 if old else 1, signature, engine, pipeline)
        # The swap: one assignment on the event loop, between two requests' steps.
        self.models[name] = served
        self.failures.pop(name, None)
        self._describe(served)
        if old is not None:
            self._retire(old)
        if engine.random_weights:
            logger.warning("model %s (%s) has RANDOM weights: its predictions are meaningless", name, path)
        logger.info(
            "serving model %s version %d from %s on %s (%s, %s; %s, %d classes), loaded and warmed up in %.2f s",
            name,
            served.version,
            path,
            engine.provider,
            engine.runtime,
            engine.precision,
            engine.contract.architecture,
            len(engine.contract.labels.names),
            time.perf_counter() - started,
        )
        return served

    def _describe(self, served: ServedModel) -> None:
        engine = served.engine
        self.metrics.describe_model(
            {
                "name": served.name,
                "path": str(engine.path),
                "weights": engine.weights,
                "random_weights": str(engine.random_weights).lower(),
                "provider": engine.provider,
                "runtime": engine.runtime,
                "precision": engine.precision,
                "version": str(served.version),
            }
        )
        if self.metrics.multiprocess_dir is None:
            self.metrics.watch_queue(served.name, lambda: served.batcher.waiting)

    def _retire(self, served: ServedModel) -> None:
        # Requests may wait for a place, then run for up to their deadline: past that none can still be on it.
        grace = self.settings.queue_wait_s + self.settings.request_timeout_s + 1.0
        task = asyncio.get_running_loop().create_task(served.retire(grace), name=f"retire-{served.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def unload(self, name: str) -> None:
        if name == self.default_name:
            raise ModelControlRefused(
                f"{name} is the default model and cannot be unloaded; set RESNET_DEFAULT_MODEL to another first"
            )
        async with self._lock(name):
            served = self.models.pop(name, None)
            if served is None:
                raise ModelNotFound(f"no model named {name!r} is loaded")
            self.metrics.forget_model(name)
            self._retire(served)
            logger.info("unloaded model %s version %d", name, served.version)

    @property
    def connected(self) -> bool:
        """Whether every model can run: False once the model process serving them is gone."""
        return all(served.engine.connected for served in self.models.values())

    def depths(self) -> dict[str, int]:
        return {name: served.batcher.waiting for name, served in self.models.items()}

    async def watch(self, every_s: float) -> None:
        """Load new and changed files, unload removed ones; a file must be unchanged for one interval first."""
        previous = {name: served.signature for name, served in self.models.items()}
        while True:
            await asyncio.sleep(every_s)
            try:
                previous = await self._poll(previous)
            except StartupError as exc:  # the folder itself went away or became unreadable
                logger.error("cannot read the model folder: %s", exc)
            except Exception:
                # The watcher must outlive any one bad poll; the traceback says what went wrong.
                logger.exception("checking the model folder failed; checking again in %g s", every_s)

    async def _poll(self, previous: dict[str, Signature | None]) -> dict[str, Signature | None]:
        sources, problems = self.sources()
        current = {name: _signature(path) for name, path in sources.items()}
        for name, message in problems.items():
            self._report_once(name, message)
        for name, signature in current.items():
            served, failure = self.models.get(name), self.failures.get(name)
            # Still being written (or just replaced): wait until it has stood still for one interval.
            unchanged = signature is not None and signature == previous.get(name)
            known = (served is not None and served.signature == signature) or (
                failure is not None and failure.signature == signature
            )
            if unchanged and not known:
                try:
                    await self.load(name)
                except ModelLoadFailed:
                    pass  # load() logged it and recorded it for /health and the index; the old version serves on
        for name in list(self.models):
            if name not in current and name not in previous:
                if name == self.default_name:
                    self._report_once(
                        name, "its file was removed; the last version loaded keeps serving as the default model"
                    )
                else:
                    await self.unload(name)
        return current

    def _report_once(self, name: str, message: str) -> None:
        """Record a problem the folder shows for ``name`` and log it, once for as long as it stays the same."""
        failure = self.failures.get(name)
        if failure is None or failure.message != message:
            self.failures[name] = LoadFailure(message, None, time.time())
            logger.error("model %s: %s", name, message)

    async def close(self) -> None:
        for served in self.models.values():
            await served.batcher.stop()
            await asyncio.to_thread(served.engine.close)
        self.models.clear()
        for outcome in await asyncio.gather(*self._retiring, return_exceptions=True):
            if isinstance(outcome, BaseException):
                logger.error("closing an earlier model version failed", exc_info=outcome)
