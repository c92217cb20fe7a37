"""The pipeline: each image comes back with its own timings, and the per-image metrics are recorded once each."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from resnet_service.core.errors import InvalidImage, ServiceError
from resnet_service.core.metrics import Metrics
from resnet_service.core.settings import Settings
from resnet_service.inference.batcher import DynamicBatcher
from resnet_service.inference.decode_gate import DecodeGate
from resnet_service.inference.model_contract import InputSpec
from resnet_service.inference.pipeline import Classified, Pipeline
from tests.support.images import encode, photo


async def _sums(rows: list[np.ndarray]) -> np.ndarray:
    # A model whose one output per row is that row's sum, so each answer can be told apart.
    return np.array([[float(row.sum())] for row in rows], dtype=np.float32)


def _series(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"model": "m", **labels}) or 0.0


def _run_each(metrics: Metrics, items: list, work: str, threads: int) -> list[Classified | ServiceError]:
    """``Pipeline.run_each`` over ``items`` with the pipeline's method ``work``, on a real batcher and pool."""

    async def scenario() -> list[Classified | ServiceError]:
        batcher = DynamicBatcher(_sums, max_batch_size=4)
        batcher.start()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            settings = Settings(model_path=Path("unused.onnx"))
            gate = DecodeGate(threads, threads)
            pipeline = Pipeline(batcher, pool, settings, metrics.for_model("m"), gate, InputSpec())
            results = await pipeline.run_each(items, await pipeline.admit(), getattr(pipeline, work))
        await batcher.stop()
        return results

    return asyncio.run(scenario())


def test_run_each_returns_every_image_with_its_timings_and_counts_each_outcome_once(clean_env: None) -> None:
    metrics = Metrics()
    jpeg = encode(photo("chelsea"), "JPEG")
    good, bad, again = _run_each(metrics, [jpeg, b"not an image", jpeg], "classify_image", threads=2)
    assert isinstance(good, Classified) and isinstance(again, Classified) and isinstance(bad, InvalidImage)
    assert good.image_size == "451x300" and good.preprocess_s > 0 and good.computed.batch_size >= 1
    assert good.probabilities.tolist() == again.probabilities.tolist()  # the same photo, the same row
    assert _series(metrics, "resnet_images_total", outcome="ok") == 2
    assert _series(metrics, "resnet_images_total", outcome="invalid_image") == 1
    assert _series(metrics, "resnet_preprocess_seconds_count") == 2
    assert _series(metrics, "resnet_queue_wait_seconds_count") == 2


def test_a_preprocessed_row_has_no_image_size_and_no_preprocessing_time(clean_env: None) -> None:
    metrics = Metrics()
    rows = [np.full((1, 2, 2, 3), value, dtype=np.float32) for value in (1.0, 2.0)]
    results = _run_each(metrics, rows, "run_row", threads=1)
    assert [r.probabilities.tolist() for r in results] == [[12.0], [24.0]]  # type: ignore[union-attr]
    assert all(r.image_size is None and r.preprocess_s == 0 for r in results)  # type: ignore[union-attr]
    assert _series(metrics, "resnet_images_total", outcome="ok") == 2
    assert _series(metrics, "resnet_preprocess_seconds_count") == 0
