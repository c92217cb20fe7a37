"""A "null" model with the service's contract, so a benchmark measures the request path and not ResNet-50.

``input`` float32 [N, 224, 224, 3] → ``probabilities`` float32 [N, classes], costing about 0.01 ms per image: one
pixel is sliced out of each image, multiplied by a fixed 3×1000 matrix and put through a softmax. Its metadata
says its weights are random, as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from resnet_service.inference.labels import Labels
from resnet_service.inference.model_contract import InputSpec, ModelContract

__all__ = ["save_self_described", "write_null_model"]


def write_null_model(path: Path, labels: Sequence[str] | None = None, seed: int = 0) -> Path:
    """The null model, with the 1,000 ImageNet classes or ``labels``; ``seed`` picks its fixed matrix."""
    names = Labels.load() if labels is None else Labels(tuple(labels))
    classes = len(names.names)
    weights = np.random.default_rng(seed).standard_normal((3, classes)).astype(np.float32) / 100.0
    initializers = [
        numpy_helper.from_array(np.array([0, 0, 0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([1, 1, 3], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 3], dtype=np.int64), "flat"),
        numpy_helper.from_array(weights, "weights"),
    ]
    nodes = [
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["pixel"]),
        helper.make_node("Reshape", ["pixel", "flat"], ["rgb"]),
        helper.make_node("MatMul", ["rgb", "weights"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "null-classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 224, 224, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bench.null_model")
    # It describes itself as an export does: ResNet-50's input and the ImageNet classes.
    contract = ModelContract(InputSpec(), names, "null stand-in")
    return save_self_described(model, path, contract, "random (null model for benchmarks)")


def save_self_described(model: onnx.ModelProto, path: Path, contract: ModelContract, weights: str) -> Path:
    """Write ``model`` with the metadata the service serves a file by, as the export writes it."""
    random_weights = str(weights.startswith("random")).lower()
    helper.set_model_props(model, {**contract.metadata(), "weights": weights, "random_weights": random_weights})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
