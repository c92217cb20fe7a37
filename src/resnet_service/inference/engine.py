"""The model's runtime (ONNX Runtime or OpenVINO) and how its runs leave the event loop free."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from resnet_service.core.digest import file_sha256
from resnet_service.core.errors import InferenceFailed, StartupError
from resnet_service.core.settings import Settings
from resnet_service.inference.batch_sizes import EVERY, POWERS_OF_TWO, model_batch_sizes, padded_size, stack_padded
from resnet_service.inference.decode_gate import DecodeGate
from resnet_service.inference.device_runner import DeviceRunner
from resnet_service.inference.model_contract import ContractDefaults, ModelContract, read_contract, session_contract
from resnet_service.inference.openvino_model import OpenVinoModel, Precision, openvino_installed

__all__ = [
    "CudaOptions",
    "Engine",
    "ModelRuntime",
    "ModelFacts",
    "load_engine",
    "check_provider",
    "choose_providers",
    "choose_runtime",
]

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# What /health and the metrics name as the provider when OpenVINO runs the model: its CPU device.
OPENVINO_CPU = "OpenVINO CPU"
Device = Literal["auto", "cpu", "cuda"]
ConvSearch = Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"]
ModelRuntime = Literal["auto", "onnxruntime", "openvino"]
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"


@dataclass(frozen=True)
class CudaOptions:
    """How the model runs when it runs on a GPU; ignored on a CPU."""

    conv_algo_search: ConvSearch = "HEURISTIC"
    graphs: bool = True
    prefer_nhwc: bool = True

    def provider_options(self) -> dict[str, str]:
        return {
            "cudnn_conv_algo_search": self.conv_algo_search,
            "enable_cuda_graph": "1" if self.graphs else "0",
            "prefer_nhwc": "1" if self.prefer_nhwc else "0",
        }


def choose_providers(device: Device, available: Sequence[str], cuda: CudaOptions | None = None) -> list[Any]:
    """The providers to ask ONNX Runtime for, best first, CUDA with its options."""
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [(CUDA, (cuda or CudaOptions()).provider_options()), CPU]
    if device == "cuda":
        raise StartupError(
            "RESNET_DEVICE=cuda, but this onnxruntime has no CUDA provider "
            f"(it has {', '.join(available)}): install the gpu extra (onnxruntime-gpu) and CUDA, "
            "or set RESNET_DEVICE=cpu"
        )
    return [CPU]


def check_provider(device: Device, in_use: Sequence[str]) -> str:
    """The provider that really runs the model; CUDA that fell back to CPU is an error, never silent."""
    provider = in_use[0]
    if device == "cuda" and provider != CUDA:
        raise StartupError(
            f"RESNET_DEVICE=cuda, but ONNX Runtime could not start CUDA and fell back to {provider}: "
            "check the CUDA and cuDNN libraries, or set RESNET_DEVICE=cpu"
        )
    return provider


def choose_runtime(
    runtime: ModelRuntime,
    precision: Precision,
    device: Device,
    available: Sequence[str],
    openvino_available: bool,
) -> Literal["onnxruntime", "openvino"]:
    """The runtime that runs the model. auto: ONNX Runtime on a GPU; on a CPU, OpenVINO when it is installed
    (measured faster in fp32, bf16 and INT8), else ONNX Runtime. Settings that cannot hold are startup errors."""
    on_cuda = choose_providers(device, available)[0] != CPU
    if runtime == OPENVINO and device == "cuda":
        raise StartupError(
            "RESNET_RUNTIME=openvino runs the model on the CPU, but RESNET_DEVICE=cuda: set RESNET_DEVICE=cpu, "
            "or RESNET_RUNTIME=onnxruntime (or auto) for the GPU"
        )
    chosen: Literal["onnxruntime", "openvino"]
    if runtime == "auto":
        chosen = OPENVINO if openvino_available and not on_cuda else ONNXRUNTIME
    else:
        chosen = runtime
    if precision == "bf16" and chosen != OPENVINO:
        if on_cuda:
            why = "on a GPU ONNX Runtime runs the model (for half precision there, export an fp16 model file)"
        elif runtime == ONNXRUNTIME:
            why = "RESNET_RUNTIME=onnxruntime"
        else:
            why = "OpenVINO is not installed (pip install 'resnet-service[openvino]')"
        raise StartupError(
            f"RESNET_PRECISION=bf16 needs OpenVINO on the CPU, but {why}: set RESNET_RUNTIME=openvino or auto "
            "with OpenVINO installed, or RESNET_PRECISION=fp32"
        )
    return chosen


def _load_cuda_libraries() -> None:
    # onnxruntime-gpu finds CUDA and cuDNN installed as pip's nvidia-* packages (as PyTorch has them) only when
    # they are loaded first; libraries on the system's library path are found either way.
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()


def _session(path: Path, options: ort.SessionOptions, providers: list[Any]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:
        raise StartupError(
            f"model file {path} could not be loaded ({exc}): re-export it with `make model` or `resnet-service export`"
        ) from exc


def _resolve_sizes(spec: str | Sequence[int], max_batch_size: int, provider: str) -> tuple[int, ...]:
    if spec == "auto":
        # A GPU pays for every new shape; a CPU pays for every padded row (see batch_sizes).
        spec = POWERS_OF_TWO if provider == CUDA else EVERY
    return model_batch_sizes(spec, max_batch_size)


@dataclass(kw_only=True)
class ModelFacts:
    """What the routes, /health, the log and the metrics read from a loaded model, wherever it runs."""

    path: Path
    provider: str
    input_name: str
    input_shape: list[int | str]
    output_name: str
    metadata: dict[str, str]
    # What the file says about its input, preprocessing and classes.
    contract: ModelContract
    # The batch sizes the model runs at; a batch is padded up to the next one.
    batch_sizes: tuple[int, ...]
    # Seconds the last warm-up took: the cold start that running every batch size once adds.
    warm_up_s: float = 0.0
    runtime: str = ONNXRUNTIME
    precision: str = "fp32"

    @functools.cached_property
    def sha256(self) -> str:
        # Hashing 100 MB takes about 0.1 s: done on the first /health call, not during the cold start.
        return file_sha256(self.path)

    @property
    def weights(self) -> str:
        """Where the weights came from, as the export recorded it: imagenet, random (seed N), or a file."""
        return self.metadata.get("weights", "unknown: the file has no export provenance")

    @property
    def random_weights(self) -> bool:
        return self.metadata.get("random_weights", "false") == "true"


@dataclass(kw_only=True)
class Engine(ModelFacts):
    """One model on its runtime: an ONNX Runtime session and the one thread its runs go through, or an OpenVINO
    compiled model and its asynchronous infer requests."""

    # None when OpenVINO runs the model.
    session: ort.InferenceSession | None
    _executor: ThreadPoolExecutor = field(repr=False)
    # On a GPU: fixed device buffers per batch size (and CUDA graphs when enabled) instead of session.run.
    runner: DeviceRunner | None = field(default=None, repr=False)
    # Told when a run starts and ends, so decoding gives way to the model while it runs on the CPU.
    gate: DecodeGate | None = field(default=None, repr=False)
    openvino: OpenVinoModel | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls,
        path: Path,
        device: Device,
        intra_op_threads: int,
        spinning: bool = True,
        batch_sizes: str | Sequence[int] = "auto",
        max_batch_size: int = 8,
        cuda: CudaOptions | None = None,
        defaults: ContractDefaults | None = None,
        runtime: ModelRuntime = "onnxruntime",
        precision: Precision = "fp32",
        in_flight: int = 1,
    ) -> Engine:
        if not path.is_file():
            raise StartupError(
                f"model file {path} not found: run `make model` (or `resnet-service export --weights random "
                f"--output {path}`), or point RESNET_MODEL_PATH at an exported ResNet-50 ONNX file"
            )
        available = ort.get_available_providers()
        chosen = choose_runtime(runtime, precision, device, available, openvino_installed())
        if chosen == OPENVINO:
            return cls._load_openvino(
                path, intra_op_threads, batch_sizes, max_batch_size, defaults, precision, in_flight
            )
        cuda = cuda or CudaOptions()
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        providers = choose_providers(device, available, cuda)
        on_cuda = providers[0] != CPU
        if on_cuda:
            _load_cuda_libraries()
        try:
            session = _session(path, options, providers)
        except StartupError as exc:
            if not (on_cuda and cuda.graphs):
                raise
            # A model with nodes ONNX Runtime places on the CPU cannot be captured as a CUDA graph.
            cuda = replace(cuda, graphs=False)
            providers = choose_providers(device, available, cuda)
            session = _session(path, options, providers)
            logger.warning("CUDA graphs are not possible for %s (%s); running one session per batch size", path, exc)
        provider = check_provider(device, session.get_providers())
        (model_input,) = session.get_inputs()
        (model_output,) = session.get_outputs()
        metadata = dict(sorted(session.get_modelmeta().custom_metadata_map.items()))
        contract = session_contract(session, path, defaults)
        sizes = _resolve_sizes(batch_sizes, max_batch_size, provider)
        runner = None
        if provider == CUDA:
            sessions = dict.fromkeys(sizes, session)
            if not cuda.graphs:
                sessions.update({size: _session(path, options, providers) for size in sizes[:-1]})
            runner = DeviceRunner(sessions, "cuda", cuda.graphs)
        # One thread: the batcher awaits one batch at a time, and one run already uses every intra-op thread.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        engine = cls(
            session=session,
            path=path,
            provider=provider,
            input_name=model_input.name,
            input_shape=list(model_input.shape),
            output_name=model_output.name,
            metadata=metadata,
            contract=contract,
            batch_sizes=sizes,
            _executor=executor,
            runner=runner,
        )
        logger.info(
            "loaded %s on ONNX Runtime's %s in fp32 with %d intra-op threads; batch sizes %s",
            path,
            provider,
            intra_op_threads,
            ",".join(map(str, sizes)),
        )
        return engine

    @classmethod
    def _load_openvino(
        cls,
        path: Path,
        threads: int,
        batch_sizes: str | Sequence[int],
        max_batch_size: int,
        defaults: ContractDefaults | None,
        precision: Precision,
        in_flight: int,
    ) -> Engine:
        model = OpenVinoModel.load(path, precision, threads, requests=in_flight)
        classes = model.output_shape[-1] if len(model.output_shape) == 2 else None
        if not isinstance(classes, int):
            model.close()
            raise StartupError(f"model file {path} gives {model.output_shape}, not [N, classes] probabilities")
        try:
            contract = read_contract(model.metadata, model.input_shape, classes, path, defaults, model.input_type)
        except StartupError:
            model.close()
            raise
        model.batch_sizes = _resolve_sizes(batch_sizes, max_batch_size, CPU)
        engine = cls(
            session=None,
            path=path,
            provider=OPENVINO_CPU,
            input_name=model.input_name,
            input_shape=model.input_shape,
            output_name=model.output_name,
            metadata=model.metadata,
            contract=contract,
            batch_sizes=model.batch_sizes,
            _executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference"),
            runtime=OPENVINO,
            precision=precision,
            openvino=model,
        )
        logger.info(
            "loaded %s on OpenVINO's CPU in %s with %d threads and %d infer requests; batch sizes %s",
            path,
            precision,
            threads,
            model.request_count,
            ",".join(map(str, model.batch_sizes)),
        )
        return engine

    @property
    def connected(self) -> bool:
        """Whether runs can reach the model: always, in this process."""
        return True

    @property
    def in_flight(self) -> int:
        """How many batches may run at once: OpenVINO's infer requests queue; ONNX Runtime runs one at a time."""
        return self.openvino.request_count if self.openvino is not None else 1

    @property
    def cuda_graphs(self) -> bool | None:
        """On a GPU, whether each batch size replays a CUDA graph; None on a CPU."""
        return self.runner.cuda_graphs if self.runner is not None else None

    def _run_rows(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        if self.runner is not None:
            return self.runner.run(rows)
        if self.openvino is not None:
            return self.openvino.run(rows)
        assert self.session is not None
        size = padded_size(len(rows), self.batch_sizes)
        batch = rows[0] if size == 1 else stack_padded(rows, size)
        (probabilities,) = self.session.run([self.output_name], {self.input_name: batch})
        return probabilities[: len(rows)]

    def run_sync(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """(1, *row_shape) rows (float32, or uint8 pixels) → their (len(rows), classes) probabilities, in the
        calling thread."""
        try:
            with self.gate.model_running() if self.gate is not None else nullcontext():
                return self._run_rows(rows)
        except Exception as exc:
            raise InferenceFailed(f"the model failed to run: {exc}") from exc

    async def run(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """Run the model off the event loop, which keeps serving meanwhile.

        ONNX Runtime runs in the inference pool's thread (session.run releases the GIL), where the rows are
        stacked into one batch too. OpenVINO runs an asynchronous infer request on its own threads.
        """
        if self.openvino is not None:
            try:
                with self.gate.model_running() if self.gate is not None else nullcontext():
                    return await self.openvino.run_async(rows)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise InferenceFailed(f"the model failed to run: {exc}") from exc
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, rows)

    async def warm_up(self) -> None:
        """Pay for first runs before reporting ready, so that no request does.

        The first run allocates ONNX Runtime's memory. On a GPU, the first run of each shape also searches cuDNN's
        convolution algorithms (and, with CUDA graphs, the runs after it capture the graph), so every model batch
        size runs. On a CPU a new shape costs nothing extra (measured: first and later runs of sizes 2 to 8 within
        5% of each other), so one run of the smallest does.
        """
        started = time.perf_counter()
        row = np.zeros((1, *self.contract.input.row_shape), dtype=self.contract.input.dtype)
        # OpenVINO prepares each new input shape on its first run (measured: 20 to 45 ms more for ResNet-50).
        every = self.runner is not None or self.openvino is not None
        sizes = self.batch_sizes if every else self.batch_sizes[:1]
        graphs = self.runner is not None and self.runner.cuda_graphs
        # ONNX Runtime runs a graph's size normally before capturing it. Every size then replays once more, so
        # that any one-time cost of a first replay is paid here. (On an H200, one replay in 40 still took 138 ms
        # after this warm-up, cause unknown; without the extra pass, one of 176 ms was seen.)
        for size in sizes:
            for _ in range(3 if graphs else 1):
                await self.run([row] * size)
        if graphs:
            for size in reversed(sizes):
                await self.run([row] * size)
        self.warm_up_s = time.perf_counter() - started
        logger.info("warmed up batch sizes %s in %.2f s", ",".join(map(str, sizes)), self.warm_up_s)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self.runner is not None:
            self.runner.close()
        if self.openvino is not None:
            self.openvino.close()


def load_engine(path: Path, settings: Settings, defaults: ContractDefaults | None = None) -> Engine:
    """``Engine.load`` as the settings say: device, threads, batch sizes, CUDA options, runtime and precision."""
    return Engine.load(
        path,
        device=settings.device,
        intra_op_threads=settings.intra_op_threads,
        spinning=settings.intra_op_spinning,
        batch_sizes=settings.batch_sizes,
        max_batch_size=settings.max_batch_size,
        cuda=CudaOptions(settings.cuda_conv_algo_search, settings.cuda_graphs, settings.cuda_prefer_nhwc),
        defaults=defaults,
        runtime=settings.runtime,
        precision=settings.precision,
        in_flight=settings.batches_in_flight,
    )
