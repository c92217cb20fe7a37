"""An exported model → one that takes uint8 pixels and does its own preprocessing, proven to give the same outputs.

The service then sends the model the resized 0-255 RGB image, [N, H, W, 3] uint8, instead of the float32 tensor:
a quarter of the bytes for each batch's copy to a GPU, and no per-image arithmetic in Python. The graph gains, in
front of the original input, the same steps the service's preprocessing takes, in the same float32 arithmetic:
Cast, the channel swap (caffe's BGR), minus the means, divided by the scales (unless they are all 1), and the
transpose to NCHW for a channels-first model. Works on fp32, fp16 (float32 input kept) and INT8 QDQ files alike.
Needs the ``onnx`` package (the export extra), not TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from resnet_service.export.parity import ParityReport, compare_outputs, run_proto
from resnet_service.inference.model_contract import UINT8_PIXELS, InputSpec

__all__ = ["UINT8_MAX_ABS_DIFF", "pixels_and_tensors", "to_uint8_input", "verify_uint8_input"]

# The steps in front run the service's own float32 operations, so the outputs are expected to be equal; this leaves
# room only for a runtime that fuses the first convolution differently.
UINT8_MAX_ABS_DIFF = 1e-5


def _prepended_nodes(onnx: Any, spec: InputSpec, pixels: str, tensor: str) -> tuple[list[Any], list[Any]]:
    """The nodes from ``pixels`` (uint8 NHWC RGB) to ``tensor`` (what the original graph took), and constants."""
    helper = onnx.helper
    nodes = [helper.make_node("Cast", [pixels], [f"{tensor}/float"], to=onnx.TensorProto.FLOAT)]
    constants = []
    current = f"{tensor}/float"

    def step(op: str, name: str, value: np.ndarray | None = None, **attributes: Any) -> None:
        nonlocal current
        inputs = [current]
        if value is not None:
            constant = f"{tensor}/{name}_value"
            constants.append(onnx.numpy_helper.from_array(value, constant))
            inputs.append(constant)
        output = f"{tensor}/{name}"
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        current = output

    if spec.colour_order == "BGR":
        step("Gather", "bgr", np.array([2, 1, 0], dtype=np.int64), axis=3)
    if spec.mean != (0.0, 0.0, 0.0):
        step("Sub", "centred", np.array(spec.mean, dtype=np.float32))
    if spec.std != (1.0, 1.0, 1.0):
        step("Div", "scaled", np.array(spec.std, dtype=np.float32))
    if spec.layout == "NCHW":
        step("Transpose", "nchw", perm=[0, 3, 1, 2])
    nodes.append(helper.make_node("Identity", [current], [tensor]))
    return nodes, constants


def _topological(nodes: list[Any], available: set[str]) -> list[Any]:
    """``nodes`` with each after the nodes that make its inputs, otherwise in their order.

    onnxruntime's fp16 converter appends its input Cast at the end of the graph; the ONNX checker wants the order.
    """
    ordered: list[Any] = []
    waiting = list(nodes)
    while waiting:
        ready = [node for node in waiting if all(not name or name in available for name in node.input)]
        if not ready:
            raise ValueError(f"the graph has a cycle or a missing input at {waiting[0].name or waiting[0].op_type}")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        placed = {id(node) for node in ready}
        waiting = [node for node in waiting if id(node) not in placed]
    return ordered


def to_uint8_input(proto: Any, spec: InputSpec) -> Any:
    """A copy of ``proto`` whose one input is [N, H, W, 3] uint8 RGB pixels, under the original input's name."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    initializers = {initializer.name for initializer in graph.initializer}
    (original,) = [value for value in graph.input if value.name not in initializers]
    if original.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ValueError(f"the model's input {original.name} is not float32: it already takes something else")
    pixels = original.name
    tensor = f"{pixels}/preprocessed"
    for node in graph.node:
        node.input[:] = [tensor if name == pixels else name for name in node.input]
    nodes, constants = _prepended_nodes(onnx, spec, pixels, tensor)
    graph.initializer.extend(constants)
    available = {value.name for value in graph.input} | {initializer.name for initializer in graph.initializer}
    ordered = _topological(nodes + list(graph.node), available)
    del graph.node[:]
    graph.node.extend(ordered)
    batch = original.type.tensor_type.shape.dim[0]
    replacement = onnx.helper.make_tensor_value_info(pixels, onnx.TensorProto.UINT8, [None, spec.height, spec.width, 3])
    replacement.type.tensor_type.shape.dim[0].CopyFrom(batch)
    position = list(graph.input).index(original)
    graph.input.remove(original)
    graph.input.insert(position, replacement)
    props = {prop.key: prop.value for prop in model.metadata_props}
    props["input_dtype"] = UINT8_PIXELS
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def pixels_and_tensors(images: Sequence[Any], spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """RGB PIL images → their resized uint8 pixels and the float32 tensors the service makes of them."""
    from resnet_service.inference.preprocessing import to_model_input

    pixels = np.stack([to_model_input(image, spec=replace(spec, uint8_pixels=True)) for image in images])
    tensors = np.stack([to_model_input(image, spec=spec) for image in images])
    return pixels, tensors


def verify_uint8_input(float_proto: Any, uint8_proto: Any, pixels: np.ndarray, tensors: np.ndarray) -> ParityReport:
    """The uint8 model on ``pixels`` against the original on the service's ``tensors`` of the same images."""
    return compare_outputs(run_proto(float_proto, tensors), run_proto(uint8_proto, pixels))
