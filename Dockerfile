# syntax=docker/dockerfile:1
# Stages:
#   export   TensorFlow + tf2onnx turn Keras ResNet50 into models/resnet50.onnx (MODEL_WEIGHTS=imagenet|random)
#   runtime  slim CPU image: the runtime dependencies and the .onnx file, no TensorFlow (the default target)
#   gpu      CUDA runtime base with onnxruntime-gpu and RESNET_DEVICE=cuda (docker build --target gpu)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS export
ARG MODEL_WEIGHTS=imagenet
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY scripts ./scripts
# The project pins its own dependency ranges in pyproject.toml; the export is a separate layer so that a new
# MODEL_WEIGHTS reuses the installed TensorFlow.
# hadolint ignore=DL3013
RUN pip install '.[export]'
# About 25 s and 7 GB of RAM; the parity check against Keras fails the build if ONNX Runtime disagrees.
# hadolint ignore=DL3059
RUN python scripts/export_onnx.py --weights "${MODEL_WEIGHTS}" --output /models/resnet50.onnx

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    RESNET_MODEL_PATH=/models/resnet50.onnx
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin resnet
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /app/src
COPY --from=export /models/resnet50.onnx /models/resnet50.onnx
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
CMD ["resnet-service", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    RESNET_MODEL_PATH=/models/resnet50.onnx RESNET_DEVICE=cuda \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.12.* python3-venv=3.12.* \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin resnet
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# The CPU onnxruntime is a plain dependency; swap it for the CUDA build, which provides the same module.
# hadolint ignore=DL3013
RUN pip install '.[gpu]' && pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps 'onnxruntime-gpu>=1.20' \
    && rm -rf /app/src
COPY --from=export /models/resnet50.onnx /models/resnet50.onnx
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
CMD ["resnet-service", "serve", "--host", "0.0.0.0", "--port", "8000"]

# The last stage is what a plain `docker build .` produces: keep it the CPU runtime.
FROM runtime
