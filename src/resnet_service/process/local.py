"""``resnet-service predict FILE...``: the service's preprocessing, model and answer shape, without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

import numpy as np

from resnet_service.core.errors import InvalidImage, ServiceError, StartupError
from resnet_service.core.exit_status import STARTUP_FAILURE
from resnet_service.core.settings import Settings
from resnet_service.inference.engine import CudaOptions, Engine
from resnet_service.inference.model_contract import ContractDefaults, InputSpec
from resnet_service.inference.preprocessing import preprocess
from resnet_service.web.schemas import ErrorDetail, ErrorResponse, PredictResponse

__all__ = ["classify_files"]


def _tensor(path: Path, settings: Settings, spec: InputSpec) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidImage(f"cannot read the file: {exc.strerror or exc}") from exc
    return preprocess(data, settings.max_image_pixels, settings.resize == "fast", spec)


def classify_files(paths: list[Path], settings: Settings, out: TextIO, err: TextIO) -> int:
    """Print one seed-JSON line per file, in order; 0 when every file was classified, 1 when one failed."""
    try:
        engine = Engine.load(
            settings.model_path,
            device=settings.device,
            intra_op_threads=settings.intra_op_threads,
            spinning=False,
            # One file at a time: one batch size, so a GPU prepares one shape.
            batch_sizes=(1,),
            max_batch_size=1,
            cuda=CudaOptions(settings.cuda_conv_algo_search, settings.cuda_graphs, settings.cuda_prefer_nhwc),
            defaults=ContractDefaults(settings.preprocessing, settings.labels),
            runtime=settings.runtime,
            precision=settings.precision,
        )
    except StartupError as exc:
        print(f"resnet-service predict: {exc}", file=err)
        return STARTUP_FAILURE
    if engine.random_weights:
        print(f"warning: {engine.path} has RANDOM weights: these predictions are meaningless", file=err)
    labels, spec = engine.contract.labels, engine.contract.input
    failed = False
    try:
        for path in paths:
            try:
                probabilities = engine.run_sync([_tensor(path, settings, spec)])[0]
            except ServiceError as exc:
                failed = True
                answer: PredictResponse | ErrorResponse = ErrorResponse(
                    error=ErrorDetail(code=exc.code, message=f"{path}: {exc.message}")
                )
            else:
                answer = PredictResponse.from_ranked(labels.top_k(probabilities, settings.top_k))
            print(json.dumps(answer.model_dump(exclude_none=True)), file=out, flush=True)
    finally:
        engine.close()
    return 1 if failed else 0
