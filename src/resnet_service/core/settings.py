"""Service configuration, read from ``RESNET_*`` environment variables."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from PIL import Image
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "available_cpus"]

_CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _cgroup_cpu_limit() -> float | None:
    """CPUs granted by the cgroup quota, or None when unlimited or unknown."""
    try:
        if _CGROUP_V2_CPU_MAX.exists():
            quota, period = _CGROUP_V2_CPU_MAX.read_text().split()[:2]
            if quota == "max":
                return None
            return int(quota) / int(period)
        if _CGROUP_V1_QUOTA.exists():
            quota_us = int(_CGROUP_V1_QUOTA.read_text())
            if quota_us <= 0:
                return None
            return quota_us / int(_CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        # An unreadable or odd cgroup file means "no quota we can see", not a startup failure.
        return None
    return None


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by the cgroup quota.

    ``os.cpu_count()`` reports the host, which oversubscribes a container limited to 2 CPUs on a 64-core node.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_cpu_limit()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cpus_per_worker(data: dict[str, Any]) -> int:
    return max(1, available_cpus() // data.get("workers", 1))


class Settings(BaseSettings):
    """Everything the service can be told; each field maps to ``RESNET_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="RESNET_", extra="ignore", protected_namespaces=(), populate_by_name=True
    )

    model_path: Path = Field(
        Path("models/resnet50.onnx"), description="The exported ONNX model file, when RESNET_MODEL_DIR is not set."
    )
    model_name: str = Field(
        "resnet50",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The name RESNET_MODEL_PATH's model is served under: /predict?model=NAME and /v2/models/NAME.",
    )
    model_dir: Path | None = Field(
        None,
        description="A folder of exported models served together, one .onnx file or one subfolder holding one "
        ".onnx file each, named by the file's stem or the subfolder's name. New and changed files are loaded and "
        "swapped in without downtime (see RESNET_MODEL_POLL_S). Replaces RESNET_MODEL_PATH.",
    )
    default_model: str | None = Field(
        None,
        description="With RESNET_MODEL_DIR: the model /predict serves without ?model=NAME; default: the first name "
        "in sorted order.",
    )
    model_poll_s: float = Field(
        2.0,
        ge=0.0,
        le=3600.0,
        description="With RESNET_MODEL_DIR: how often the folder is checked for new, changed and removed models; "
        "a file is loaded once it has not changed for one interval. 0: only POST "
        "/v2/repository/models/NAME/load loads.",
    )
    preprocessing: Literal["caffe", "tf", "torch", "none"] | None = Field(
        None,
        description="How to preprocess images for a model file whose metadata does not say (an ONNX file not made "
        "by the export): caffe, tf, torch or none, as keras.applications' preprocess_input. Its input size and "
        "layout come from the file's input shape. Files that describe themselves ignore it.",
    )
    labels: str | None = Field(
        None,
        description="The class names of a model file whose metadata does not name them: a label file (one name "
        "per line, or JSON) or imagenet.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when a working CUDA provider exists, else CPU. cuda: CUDA or fail."
    )
    runtime: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto",
        description="What runs the model. onnxruntime: ONNX Runtime, on the CPU or CUDA. openvino: OpenVINO on the "
        "CPU (the openvino extra), the same ONNX file about 1.1 times as fast in fp32, and bf16 where the CPU has "
        "it. auto: ONNX Runtime on a GPU; on a CPU, OpenVINO when it is installed, else ONNX Runtime.",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="The precision OpenVINO computes in. bf16 needs OpenVINO and a CPU with bf16 instructions "
        "(AVX-512 BF16 or AMX; else the service does not start): several times the images per second, with "
        "probabilities about 0.01 off fp32's. An INT8 model file stays INT8 in both.",
    )
    batches_in_flight: int = Field(
        1,
        ge=1,
        le=8,
        description="With OpenVINO: how many batches are handed to it at once, one infer request each, so that the "
        "next batch starts the moment the last one ends instead of after the event loop has answered it. Measured "
        "on 2 cores with 8 clients: no faster than 1, since the next batch then starts with fewer images. ONNX "
        "Runtime runs one batch at a time.",
    )
    top_k: int = Field(5, ge=1, le=1000, description="How many predictions /predict returns.")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest accepted image file, in bytes.")
    max_image_pixels: int = Field(
        Image.MAX_IMAGE_PIXELS or 89_478_485,
        ge=1,
        description="Largest accepted image, in pixels (width × height): the decompression-bomb guard.",
    )
    grpc_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Where the Open Inference Protocol v2 is also served over gRPC (Triton's and KServe's gRPC "
        "clients); unset, no gRPC.",
    )
    grpc_host: str = Field(
        "127.0.0.1",
        description="The address the gRPC port listens on; 0.0.0.0 in a container.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="Processes serving one port, each a full replica with its own model session, batcher and "
        "queue (RESNET_MAX_QUEUE each). One Python process tops out at a few hundred requests a second however "
        "many cores it has; more workers use more cores, at one model copy each in memory.",
    )
    model_process: bool = Field(
        False,
        description="One more process holds the models and runs every worker's batches, so there is one model "
        "copy and a batch fills from all the workers' requests (RESNET_WORKERS); the rows travel to it through "
        "shared memory. Meant for a GPU, where each model copy competes for the one device.",
    )
    model_process_socket: Path | None = Field(
        None,
        description="Set by `serve` for its workers when RESNET_MODEL_PROCESS is on: the model process's socket.",
    )
    intra_op_threads: int = Field(
        default_factory=_cpus_per_worker,
        ge=1,
        description="ONNX Runtime intra-op threads per worker; default: the CPUs this process may use, divided "
        "among RESNET_WORKERS.",
    )
    intra_op_spinning: bool = Field(
        False,
        description="Let ONNX Runtime's threads spin between runs: about 2 ms less latency for a lone client, "
        "but the spinning takes CPU that decoding needs under load (measured: 4-6% less throughput at 8 clients).",
    )
    resize: Literal["exact", "fast"] = Field(
        "exact",
        description="exact: bit-identical to Keras' own preprocessing (PIL resize, preprocess_input). fast: large "
        "JPEGs decode at reduced scale (Image.draft) and large images are box-reduced before the resize.",
    )
    max_batch_size: int = Field(
        8, ge=1, le=256, description="Most requests coalesced into one ONNX Runtime call; 1 turns batching off."
    )
    batch_timeout_ms: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="How long an idle model waits for company before running a batch; 0 runs at once.",
    )
    batch_sizes: Annotated[Literal["auto", "every", "powers-of-two"] | tuple[int, ...], NoDecode] = Field(
        "auto",
        description="The batch sizes the model runs at; a batch is padded up to the next, and each runs once before "
        "the service is ready. every: 1 to RESNET_MAX_BATCH_SIZE, no padding. powers-of-two: 1, 2, 4, ... and "
        "RESNET_MAX_BATCH_SIZE. Or a list such as 1,4,16,32. auto: powers-of-two on a GPU, where each new shape "
        "costs a cuDNN search of up to half a second; every on a CPU, where a padded row costs as much as a real one.",
    )
    cuda_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "HEURISTIC",
        description="On a GPU, how cuDNN picks each convolution's algorithm, once per batch size during warm-up: "
        "HEURISTIC asks cuDNN's heuristics (about 0.1 s a size), EXHAUSTIVE times every algorithm (about 0.5 s a "
        "size; measured on an H200 with CUDA graphs and channels-last, no faster than HEURISTIC), DEFAULT takes a "
        "fixed one (about half the speed).",
    )
    cuda_graphs: bool = Field(
        True,
        description="On a GPU, capture each batch size's run as a CUDA graph and replay it. Without graphs (or for "
        "a model with nodes on the CPU, which cannot be captured) each batch size gets a session of its own, with "
        "its own copy of the weights on the GPU: one session switching shapes rebuilds its cuDNN plans every time.",
    )
    cuda_prefer_nhwc: bool = Field(
        True,
        description="On a GPU, run convolutions channels-last, the layout tensor cores use: measured on an H200, "
        "29% more images/s at batch 32 in fp32.",
    )
    preprocess_threads: int = Field(
        default_factory=_cpus_per_worker,
        ge=1,
        description="Threads decoding and resizing uploads; default: the CPUs this worker may use. While the model "
        "runs on the CPU one of them waits, since every decode beside a model run slows all of its threads; while "
        "it is idle (a fast model, a GPU) all of them decode.",
    )
    max_queue: int = Field(
        16,
        ge=1,
        description="Most requests admitted and not yet in a running batch (decoding or waiting for the model), per "
        "worker; past it a request waits up to RESNET_QUEUE_WAIT_S for a place, then gets 503 and Retry-After, "
        "instead of queueing without limit. Two full batches by default, so that the worst wait stays about "
        "RESNET_QUEUE_WAIT_S + 16 / (images per second).",
    )
    queue_wait_s: float = Field(
        1.0,
        ge=0.0,
        le=60.0,
        description="How long a request that finds RESNET_MAX_QUEUE places taken waits for one (first come, first "
        "served) before it is refused with 503. A refusal that came at once would let a client that ignores "
        "Retry-After come straight back, thousands of times a second, with the CPU the model needs; 0 refuses at once.",
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0.0,
        le=3600.0,
        description="Deadline for one /predict request, upload included; a request still waiting when it passes "
        "leaves the queue before it costs model time and is answered 504. Keep it under nginx's proxy_read_timeout.",
    )
    shutdown_grace_s: float = Field(
        25.0,
        ge=0.0,
        description="On SIGTERM, how long in-flight and queued requests may take to finish before they are "
        "cancelled; keep it under the orchestrator's grace period (Kubernetes: 30 s).",
    )
    max_images_per_request: int = Field(
        16,
        ge=1,
        le=1024,
        description="Most images one /predict (repeated `image` fields) or one v2 infer request may carry; each "
        "image takes its own place in the queue.",
    )
    log_format: Literal["json", "text"] = Field(
        "text",
        description="json: one JSON object per line on stdout, one line per request with its timings. text: the "
        "same fields, for a person reading a terminal.",
    )
    metrics_multiprocess_dir: Path | None = Field(
        None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="Set by `serve` for RESNET_WORKERS > 1 (prometheus-client's own variable): where each worker "
        "writes its metrics, so that /metrics, whichever worker answers it, adds up every worker's.",
    )
    url_inputs: bool = Field(
        False,
        description='Accept JSON {"url": "https://..."} on /predict: the service fetches the image itself. Off by '
        "default: it lets clients make the service open connections.",
    )
    url_allowed_hosts: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(),
        description="With RESNET_URL_INPUTS: comma-separated host names (images.example.com, or *.example.com for "
        "its subdomains) and IP networks (10.1.0.0/16) that image URLs may name; empty: any host. Private, "
        "loopback and link-local addresses are refused unless an entry names that host exactly or holds the address.",
    )
    url_timeout_s: float = Field(
        5.0,
        gt=0.0,
        le=60.0,
        description="With RESNET_URL_INPUTS: the most one image URL's fetch may take, redirects included.",
    )
    otel_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "RESNET_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        description="An OTLP receiver (an OpenTelemetry Collector, Jaeger, Tempo) to send traces to, such as "
        "http://collector:4317; OpenTelemetry's own OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and "
        "OTEL_EXPORTER_OTLP_ENDPOINT are read too. Unset: no traces.",
    )
    otel_protocol: Literal["grpc", "http/protobuf"] = Field(
        "grpc",
        validation_alias=AliasChoices(
            "RESNET_OTEL_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
        ),
        description="How traces reach RESNET_OTEL_ENDPOINT: grpc (port 4317) or http/protobuf (port 4318, "
        "/v1/traces added to an endpoint without a path).",
    )
    otel_sdk_disabled: bool = Field(
        False,
        validation_alias="OTEL_SDK_DISABLED",
        description="OpenTelemetry's own switch: true turns traces off even with an endpoint set.",
    )
    api_keys: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(),
        repr=False,
        description="Comma-separated keys; when set, /predict needs `Authorization: Bearer <key>`. Empty: open.",
    )

    @field_validator("batch_sizes", mode="before")
    @classmethod
    def _parse_batch_sizes(cls, value: object) -> object:
        if isinstance(value, str) and value.strip() not in ("auto", "every", "powers-of-two"):
            try:
                sizes = tuple(int(size) for size in value.split(",") if size.strip())
            except ValueError:
                raise ValueError(
                    f"{value!r} is not auto, every, powers-of-two or a comma-separated list of batch sizes"
                ) from None
            if not sizes or min(sizes) < 1:
                raise ValueError(f"{value!r}: batch sizes must be whole numbers of at least 1")
            return sizes
        return value.strip() if isinstance(value, str) else value

    @field_validator("otel_endpoint", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # Compose's ${VAR:-} and an empty ConfigMap entry give "", which must mean "no traces", not an endpoint.
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("api_keys", "url_allowed_hosts", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: object) -> object:
        # The environment holds one comma-separated string; a blank entry must never become a valid key or host.
        if isinstance(value, str):
            return frozenset(key.strip() for key in value.split(",") if key.strip())
        return value

    @property
    def tracing(self) -> bool:
        """Whether traces are exported: an OTLP endpoint is set and OpenTelemetry is not switched off."""
        return self.otel_endpoint is not None and not self.otel_sdk_disabled

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables that rebuild them, for worker processes."""
        variables = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, frozenset):
                value = ",".join(sorted(value))
            elif isinstance(value, tuple):
                value = ",".join(map(str, value))
            elif isinstance(value, bool):
                value = str(value).lower()
            key = field.validation_alias if isinstance(field.validation_alias, str) else f"RESNET_{name.upper()}"
            variables[key] = str(value)
        return variables
