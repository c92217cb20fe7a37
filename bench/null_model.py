"""A "null" model with the service's contract, so a benchmark measures the request path and not ResNet-50.

``input`` float32 [N, 224, 224, 3] → ``probabilities`` float32 [N, 1000], costing about 0.01 ms per image: one
pixel is sliced out of each image, multiplied by a fixed 3×1000 matrix and put through a softmax. Its metadata
says its weights are random, as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["write_null_model"]

CLASSES = 1000


def write_null_model(path: Path) -> Path:
    weights = np.random.default_rng(0).standard_normal((3, CLASSES)).astype(np.float32) / 100.0
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
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", CLASSES])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bench.null_model")
    for key, value in {"weights": "random (null model for benchmarks)", "random_weights": "true"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
