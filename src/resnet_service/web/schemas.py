"""The JSON shapes of every response."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Prediction",
    "PredictResponse",
    "ErrorDetail",
    "InputContract",
    "ModelSummary",
    "ErrorResponse",
    "ModelInfo",
    "Health",
    "Liveness",
    "Readiness",
]


class Prediction(BaseModel):
    label: str = Field(
        description="The class name: ImageNet's as Keras' decode_predictions spells it, or the model's own, from "
        "the label file it was exported with."
    )
    probability: float = Field(description="The model's softmax output for this class (float32, widened).")


class PredictResponse(BaseModel):
    """The Flask + Keras tutorial's answer, byte for byte: ``predictions`` then ``success``, nothing else."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "predictions": [
                    {"label": "Eskimo_dog", "probability": 0.5135327577590942},
                    {"label": "Siberian_husky", "probability": 0.3011641204357147},
                    {"label": "malamute", "probability": 0.1323559582233429},
                    {"label": "timber_wolf", "probability": 0.0190412662923336},
                    {"label": "white_wolf", "probability": 0.0121834166347980},
                ],
                "success": True,
            }
        }
    )

    predictions: list[Prediction]
    success: Literal[True] = True

    @classmethod
    def from_ranked(cls, ranked: list[tuple[str, float]]) -> PredictResponse:
        """The answer for ``Labels.top_k``'s (label, probability) pairs."""
        return cls(predictions=[Prediction(label=label, probability=p) for label, p in ranked])


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable code, such as invalid_image.")
    message: str = Field(description="What went wrong, in words a person can act on.")
    request_id: str | None = Field(
        None, description="The request's X-Request-ID (given or generated), to quote when reporting a failure."
    )


class ErrorResponse(BaseModel):
    success: Literal[False] = False
    error: ErrorDetail


class InputContract(BaseModel):
    """What one image becomes before the model sees it, as the model file says."""

    shape: list[int] = Field(description="One image's tensor, without the batch axis.")
    datatype: Literal["FP32", "UINT8"] = Field(
        description="FP32: the preprocessed tensor; UINT8: the resized 0-255 RGB pixels, which the model "
        "preprocesses itself."
    )
    preprocessing_in_model: bool = Field(
        description="Whether the model applies the preprocessing below in its own graph (it then takes UINT8)."
    )
    layout: Literal["NHWC", "NCHW"]
    preprocessing: Literal["caffe", "tf", "torch", "none"] = Field(
        description="keras.applications' preprocess_input mode."
    )
    colour_order: Literal["RGB", "BGR"]
    mean: list[float] = Field(description="Subtracted from each channel, in pixel units (0-255), in colour order.")
    std: list[float] = Field(description="Then divided into each channel, in pixel units.")
    resize_filter: str


class ModelSummary(BaseModel):
    """A served model: what to call it, what it answers, and what it takes."""

    name: str = Field(description="`/predict?model=NAME`, `/v2/models/NAME`.")
    default: bool = Field(description="Whether /predict without ?model= uses it.")
    version: int = Field(description="How many times this name has been loaded: a reload adds one.")
    architecture: str
    random_weights: bool
    classes: int
    labels: list[str] = Field(description="The class names, in output order.")
    input: InputContract


class ModelInfo(BaseModel):
    name: str
    version: int = Field(description="How many times this name has been loaded: a reload adds one.")
    loaded_at: float = Field(description="When this version started serving (Unix time).")
    last_error: str | None = Field(
        None, description="Why the last load of a newer version failed; this version serves on meanwhile."
    )
    waiting: int = Field(description="This model's requests admitted and not yet in a running batch.")
    architecture: str
    classes: int
    input: InputContract
    path: str
    sha256: str
    weights: str = Field(description="imagenet, random (seed N), or a weights file and its sha256.")
    random_weights: bool = Field(description="True when the predictions are meaningless: the weights are random.")
    input_name: str
    input_shape: list[int | str]
    output_name: str
    runtime: Literal["onnxruntime", "openvino"] = Field(description="What runs the model (RESNET_RUNTIME).")
    provider: str = Field(
        description="Where it runs: the ONNX Runtime execution provider actually in use, or OpenVINO CPU."
    )
    precision: Literal["fp32", "bf16"] = Field(
        description="The precision the runtime computes in (RESNET_PRECISION); an INT8 model file's quantized "
        "layers stay INT8 in either."
    )
    batch_sizes: list[int] = Field(description="The batch sizes the model runs at; a batch is padded up to the next.")
    warm_up_s: float = Field(description="Seconds the warm-up took before the service reported ready.")
    cuda_graphs: bool | None = Field(
        description="On a GPU: whether each batch size replays a CUDA graph (false: a session per size). Null on a CPU."
    )
    metadata: dict[str, str] = Field(description="The provenance written into the ONNX file at export.")


class Status(StrEnum):
    """The service's state, as /health and /health/ready report it."""

    STARTING = "starting"
    READY = "ready"
    # Readiness answers 503 so balancers stop sending; requests already in are still served.
    STOPPING = "stopping"
    # With RESNET_MODEL_PROCESS: the model process is gone, so nothing can be classified.
    UNAVAILABLE = "unavailable"


class Health(BaseModel):
    status: Status
    version: str
    model: ModelInfo | None = Field(description="The default model.")
    models: list[ModelInfo] = Field(description="Every model being served, the default first.")
    failures: dict[str, str] = Field(
        description="Models in the model folder that are not being served, and why (a failed load)."
    )
    warning: str | None = Field(None, description="Set when a model's weights are random.")
    versions: dict[str, str] = Field(description="Versions of the libraries that serve the model.")
    intra_op_threads: int
    waiting: int = Field(description="Requests admitted and not yet in a running batch, over every model.")
    max_queue: int = Field(description="RESNET_MAX_QUEUE, per model: past this many waiting, /predict answers 503.")


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    status: Status
