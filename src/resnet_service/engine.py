"""The ONNX Runtime session and the threads that run it, so the event loop never waits on the model."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from resnet_service.decode_gate import DecodeGate
from resnet_service.errors import InferenceFailed, StartupError

__all__ = ["Engine", "choose_providers", "check_provider"]

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
Device = Literal["auto", "cpu", "cuda"]


def choose_providers(device: Device, available: Sequence[str]) -> list[str]:
    """The providers to ask ONNX Runtime for, best first."""
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Engine:
    """One InferenceSession plus the bounded pool its runs go through."""

    session: ort.InferenceSession
    path: Path
    provider: str
    input_name: str
    input_shape: list[int | str]
    output_name: str
    metadata: dict[str, str]
    _executor: ThreadPoolExecutor = field(repr=False)
    # Told when a run starts and ends, so decoding gives way to the model while it runs on the CPU.
    gate: DecodeGate | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls, path: Path, device: Device, intra_op_threads: int, inference_threads: int, spinning: bool = True
    ) -> Engine:
        if not path.is_file():
            raise StartupError(
                f"model file {path} not found: run `make model` (or `resnet-service export --weights random "
                f"--output {path}`), or point RESNET_MODEL_PATH at an exported ResNet-50 ONNX file"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        providers = choose_providers(device, ort.get_available_providers())
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            raise StartupError(
                f"model file {path} could not be loaded ({exc}): re-export it with `make model` "
                "or `resnet-service export`"
            ) from exc
        provider = check_provider(device, session.get_providers())
        (model_input,) = session.get_inputs()
        (model_output,) = session.get_outputs()
        if len(model_input.shape) != 4 or list(model_input.shape[1:]) != [224, 224, 3]:
            raise StartupError(
                f"model file {path} takes {model_input.shape}, not [N, 224, 224, 3]: export it with "
                "scripts/export_onnx.py"
            )
        executor = ThreadPoolExecutor(max_workers=inference_threads, thread_name_prefix="inference")
        engine = cls(
            session=session,
            path=path,
            provider=provider,
            input_name=model_input.name,
            input_shape=list(model_input.shape),
            output_name=model_output.name,
            metadata=dict(sorted(session.get_modelmeta().custom_metadata_map.items())),
            _executor=executor,
        )
        logger.info("loaded %s on %s with %d intra-op threads", path, provider, intra_op_threads)
        return engine

    @functools.cached_property
    def sha256(self) -> str:
        # Hashing 100 MB takes about 0.1 s: done on the first /health call, not during the cold start.
        return _sha256(self.path)

    @property
    def weights(self) -> str:
        """Where the weights came from, as the export recorded it: imagenet, random (seed N), or a file."""
        return self.metadata.get("weights", "unknown: the file has no export provenance")

    @property
    def random_weights(self) -> bool:
        return self.metadata.get("random_weights", "false") == "true"

    def run_sync(self, batch: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) float32 → (N, 1000) probabilities, in the calling thread."""
        try:
            with self.gate.model_running() if self.gate is not None else nullcontext():
                (probabilities,) = self.session.run([self.output_name], {self.input_name: batch})
        except Exception as exc:
            raise InferenceFailed(f"the model failed to run: {exc}") from exc
        return probabilities

    async def run(self, batch: np.ndarray) -> np.ndarray:
        """Run the model in the inference pool; session.run releases the GIL, so the loop keeps serving."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, batch)

    async def warm_up(self) -> None:
        # The first run allocates ONNX Runtime's arenas and picks kernels; pay that before reporting ready.
        await self.run(np.zeros((1, 224, 224, 3), dtype=np.float32))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
