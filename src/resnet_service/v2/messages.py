"""Open Inference Protocol v2 (KServe V2, Triton HTTP) messages, and tensors ↔ numpy.

The spec: https://github.com/kserve/open-inference-protocol. Tensor data travels either in the JSON ``data``
field (row-major, flattened or nested) or, with the binary tensor data extension, as raw little-endian bytes
after the JSON header, sized by each tensor's ``parameters.binary_data_size``; a BYTES element in binary form is
a 4-byte little-endian length and then its bytes. ``tritonclient.http`` sends binary by default.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from resnet_service.core.errors import InvalidInferenceRequest

__all__ = [
    "V2_MODEL_VERSION",
    "IMAGE_INPUT",
    "TENSOR_INPUT",
    "OUTPUT",
    "InferenceRequest",
    "InferenceResponse",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "ServerMetadata",
    "ModelMetadata",
    "RepositoryIndexRequest",
    "RepositoryModel",
    "TensorMetadata",
    "V2Error",
    "bytes_elements",
    "tensor_rows",
    "serialize_bytes",
    "inline_json_schema",
]

V2_MODEL_VERSION = "1"
IMAGE_INPUT = "image"
TENSOR_INPUT = "input"
OUTPUT = "probabilities"
_LENGTH = struct.Struct("<I")


class TensorMetadata(BaseModel):
    """``$metadata_tensor``: a tensor's name, datatype and shape; -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    """``$metadata_server_response`` for ``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    """``$metadata_model_response`` for ``GET /v2/models/{name}``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    # Beyond the protocol's fields, as Triton adds its own: what runs the model and in which precision.
    parameters: dict[str, str] | None = None


class RepositoryIndexRequest(BaseModel):
    """The optional body of ``POST /v2/repository/index``."""

    ready: bool = Field(False, description="Only the models that are ready.")


class RepositoryModel(BaseModel):
    """One entry of ``POST /v2/repository/index`` (the model repository extension, as Triton answers it)."""

    name: str
    version: str | None = None
    state: str = Field(description="READY, or UNAVAILABLE with the reason.")
    reason: str = ""


class RequestInput(BaseModel):
    """``$request_input``: one input tensor; ``data`` is absent when the bytes follow the JSON header."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    """``$request_output``: ``binary_data`` (bool) and ``classification`` (top k) are the parameters understood."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """``$inference_request``."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """``$response_output``; with binary data, ``parameters.binary_data_size`` replaces ``data``."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    """``$inference_response``."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class V2Error(BaseModel):
    """``$inference_error_response``: the protocol's only error shape."""

    error: str


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _count(shape: list[int]) -> int:
    if any(dim < 0 for dim in shape):
        raise InvalidInferenceRequest(f"shape {shape} has a negative dimension")
    # Python integers: a hostile shape such as [2**54, 224, 224, 3] must not wrap around to a small count.
    return math.prod(shape)


def bytes_elements(tensor: RequestInput, raw: bytes | None) -> list[bytes]:
    """A BYTES tensor's elements: from the binary section, or from ``data`` as base64 strings (JSON has no bytes)."""
    count = _count(tensor.shape)
    if raw is not None:
        elements, offset = [], 0
        while offset < len(raw):
            if offset + _LENGTH.size > len(raw):
                raise InvalidInferenceRequest(f"input '{tensor.name}': a BYTES element's length is cut short")
            (length,) = _LENGTH.unpack_from(raw, offset)
            offset += _LENGTH.size
            if offset + length > len(raw):
                raise InvalidInferenceRequest(f"input '{tensor.name}': a BYTES element runs past its data")
            elements.append(raw[offset : offset + length])
            offset += length
    else:
        try:
            elements = [base64.b64decode(item, validate=True) for item in _flatten(tensor.data or [])]
        except (binascii.Error, TypeError, ValueError) as exc:
            raise InvalidInferenceRequest(
                f"input '{tensor.name}': in JSON, each BYTES element must be a base64-encoded image file ({exc})"
            ) from exc
    if len(elements) != count:
        raise InvalidInferenceRequest(
            f"input '{tensor.name}' has shape {tensor.shape} ({count} elements) but carries {len(elements)}"
        )
    return elements


# The row element types a model can take: float32 tensors, or uint8 pixels for one that preprocesses itself.
_ROW_TYPES: dict[str, np.dtype] = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}


def tensor_rows(tensor: RequestInput, raw: bytes | None, row_shape: tuple[int, ...], datatype: str) -> np.ndarray:
    """A ``datatype`` (FP32 or UINT8) tensor of shape [N, *row_shape], from the binary section or ``data``."""
    if len(tensor.shape) != 1 + len(row_shape) or tuple(tensor.shape[1:]) != row_shape:
        raise InvalidInferenceRequest(
            f"input '{tensor.name}' must have shape [N, {', '.join(map(str, row_shape))}], not {tensor.shape}"
        )
    dtype = _ROW_TYPES[datatype]
    count = _count(tensor.shape)
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InvalidInferenceRequest(
                f"input '{tensor.name}': shape {tensor.shape} needs {count * dtype.itemsize} bytes of {datatype}, "
                f"got {len(raw)}"
            )
        array = np.frombuffer(raw, dtype=dtype)
    else:
        try:
            values = np.asarray(_flatten(tensor.data or []), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInferenceRequest(f"input '{tensor.name}': data is not a list of numbers ({exc})") from exc
        if values.size != count:
            raise InvalidInferenceRequest(
                f"input '{tensor.name}' has shape {tensor.shape} ({count} elements) but carries {values.size}"
            )
        if datatype == "UINT8" and not (np.all(values == np.rint(values)) and np.all((values >= 0) & (values <= 255))):
            raise InvalidInferenceRequest(f"input '{tensor.name}': UINT8 data must be whole numbers from 0 to 255")
        array = values.astype(dtype)
    if datatype == "FP32" and not np.isfinite(array).all():
        raise InvalidInferenceRequest(f"input '{tensor.name}' has NaN or infinite values")
    return array.astype(dtype.newbyteorder("="), copy=False).reshape(tensor.shape)


def serialize_bytes(elements: list[bytes]) -> bytes:
    """BYTES elements in the binary tensor data form: each a 4-byte little-endian length, then its bytes."""
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)


def inline_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` inlined, to embed in an OpenAPI operation as a request body."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref", "")
            if reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
