"""A real ONNX model that ONNX Runtime runs for the warm-up's zeros and fails on every real photo.

It gathers row ``int(max(pixel))`` of a one-row table: index 0 for an all-zero warm-up batch, out of bounds (an
error raised inside ``session.run``) for any preprocessed photo, whose brightest channel is well above 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from resnet_service.inference.labels import Labels
from resnet_service.inference.model_contract import InputSpec, ModelContract


def write_faulty_model(path: Path) -> Path:
    pixels = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 224, 224, 3])
    probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 1000])
    table = numpy_helper.from_array(np.full((1, 1000), 1e-3, dtype=np.float32), name="table")
    axes = numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), name="axes")
    nodes = [
        helper.make_node("ReduceMax", ["input", "axes"], ["brightest"], keepdims=0),
        helper.make_node("Cast", ["brightest"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["probabilities"], axis=0),
    ]
    graph = helper.make_graph(nodes, "faulty", [pixels], [probabilities], initializer=[table, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    # It describes itself as an export does: ResNet-50's input and the ImageNet classes.
    contract = ModelContract(InputSpec(), Labels.load(), "faulty stand-in")
    onnx.helper.set_model_props(model, contract.metadata())
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
