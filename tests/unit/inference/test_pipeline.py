"""The pipeline: each image comes back with its own timings, and the per-image metrics are recorded once each."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from resnet_service.errors import InvalidImage, ServiceError
from resnet_service.inference.batcher import DynamicBatcher
from resnet_service.inference.decode_gate import DecodeGate
from resnet_service.inference.model_contract import InputSpec
from resnet_service.inference.pipeline import Classified, Pipeline
from resnet_service.metrics import Metrics
from resnet_service.settings import Settings
from tests.support.images import encode, photo


async def _sums(rows: list[np.ndarray]) -> np.ndarray:
    # A model whose one output per row is that row's sum, so each answer can be told apart.
    return np.array([[float(row.sum())] for row in rows], dtype=np.float32)


def _series(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"model": "m", **labels}) or 0.0


def test_run_each_returns_every_image_with_its_timings_and_counts_each_outcome_once(clean_env: None) -> None:
    metrics = Metrics()
    jpeg = encode(photo("chelsea"), "JPEG")

    async def scenario() -> list[Classified | ServiceError]:
        batcher = DynamicBatcher(_sums, max_batch_size=4)
        batcher.start()
        with ThreadPoolExecutor(max_workers=2) as pool:
            pipeline = Pipeline(
                batcher,
                pool,
                Settings(model_path=Path("unused.onnx")),
                metrics.for_model("m"),
                DecodeGate(2, 2),
                InputSpec(),
            )
            first = await pipeline.admit()
            results = await pipeline.run_each([jpeg, b"not an image", jpeg], first, pipeline.classify_image)
        await batcher.stop()
        return results

    good, bad, again = asyncio.run(scenario())
    assert isinstance(good, Classified) and isinstance(again, Classified) and isinstance(bad, InvalidImage)
    assert good.image_size == "451x300" and good.preprocess_s > 0 and good.computed.batch_size >= 1
    assert good.probabilities.tolist() == again.probabilities.tolist()  # the same photo, the same row
    assert _series(metrics, "resnet_images_total", outcome="ok") == 2
    assert _series(metrics, "resnet_images_total", outcome="invalid_image") == 1
    assert _series(metrics, "resnet_preprocess_seconds_count") == 2
    assert _series(metrics, "resnet_queue_wait_seconds_count") == 2


def test_a_preprocessed_row_has_no_image_size_and_no_preprocessing_time(clean_env: None) -> None:
    metrics = Metrics()

    async def scenario() -> list[Classified | ServiceError]:
        batcher = DynamicBatcher(_sums, max_batch_size=4)
        batcher.start()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pipeline = Pipeline(
                batcher,
                pool,
                Settings(model_path=Path("unused.onnx")),
                metrics.for_model("m"),
                DecodeGate(1, 1),
                InputSpec(),
            )
            rows = [np.full((1, 2, 2, 3), value, dtype=np.float32) for value in (1.0, 2.0)]
            results = await pipeline.run_each(rows, await pipeline.admit(), pipeline.run_row)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [r.probabilities.tolist() for r in results] == [[12.0], [24.0]]  # type: ignore[union-attr]
    assert all(r.image_size is None and r.preprocess_s == 0 for r in results)  # type: ignore[union-attr]
    assert _series(metrics, "resnet_images_total", outcome="ok") == 2
    assert _series(metrics, "resnet_preprocess_seconds_count") == 0
