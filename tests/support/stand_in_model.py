"""A small ONNX classifier with the service's contract, built in milliseconds without TensorFlow.

It serves every API and end-to-end test that does not compare against Keras, so those tests need neither the
export's minute nor its 7 GB. Like ResNet-50's export it takes float32 [N, 224, 224, 3] in caffe preprocessing and
gives softmax probabilities over the 1,000 ImageNet classes. Each image is average-pooled to 8×8 and multiplied by
a seeded matrix, so different photos get different, deterministic answers.

``conv_layers`` adds 3×3 convolutions at full resolution, each costing about a tenth of ResNet-50's time per image
on a CPU, for the tests that need a model slow enough to fill a queue.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.null_model import save_self_described
from resnet_service.inference.labels import Labels
from resnet_service.inference.model_contract import InputSpec, ModelContract

WEIGHTS = "random (stand-in model for tests, seed {seed})"
_CHANNELS = 32
_POOLED = 8  # 224 / 28


def _conv(
    name: str, source: str, channels_in: int, rng: np.random.Generator
) -> tuple[list[onnx.NodeProto], onnx.TensorProto]:
    kernel = (rng.standard_normal((_CHANNELS, channels_in, 3, 3)) / np.sqrt(9 * channels_in)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", [source, f"{name}.kernel"], [f"{name}.conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [f"{name}.conv"], [name]),
    ]
    return nodes, numpy_helper.from_array(kernel, f"{name}.kernel")


def write_stand_in_model(path: Path, conv_layers: int = 0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = Labels.load()
    nodes = [helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2])]
    initializers = []
    features, channels = "nchw", 3
    for layer in range(conv_layers):
        layer_nodes, kernel = _conv(f"conv{layer}", features, channels, rng)
        nodes.extend(layer_nodes)
        initializers.append(kernel)
        features, channels = f"conv{layer}", _CHANNELS
    width = channels * _POOLED * _POOLED
    # Caffe-preprocessed pixels lie within about ±150: this scale gives logits of about unit spread.
    matrix = (rng.standard_normal((width, len(labels.names))) / (15.0 * np.sqrt(width))).astype(np.float32)
    initializers += [
        numpy_helper.from_array(matrix, "classifier"),
        numpy_helper.from_array(np.array([-1, width], dtype=np.int64), "flat"),
    ]
    nodes += [
        helper.make_node("AveragePool", [features], ["pooled"], kernel_shape=[28, 28], strides=[28, 28]),
        helper.make_node("Reshape", ["pooled", "flat"], ["features"]),
        helper.make_node("MatMul", ["features", "classifier"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "stand-in-classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 224, 224, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(labels.names)])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests.stand_in")
    contract = ModelContract(InputSpec(), labels, "stand-in")
    return save_self_described(model, path, contract, WEIGHTS.format(seed=seed))
