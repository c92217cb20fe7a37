# Stages:
#   export   TensorFlow + tf2onnx turn Keras ResNet50 into models/resnet50.onnx (MODEL_WEIGHTS=imagenet|random)
#   serving  what the two serving images share: user, sources, port, health check, command
#   runtime  slim CPU image: the runtime dependencies and the .onnx file, no TensorFlow (the default target)
#   gpu      onnxruntime-gpu with CUDA and cuDNN from pip, settings for one GPU (docker build --target gpu)

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

# What both serving images share: the user, the sources to install, the port, the probe and the command.
FROM ${PYTHON_IMAGE} AS serving
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    RESNET_MODEL_PATH=/models/resnet50.onnx RESNET_GRPC_HOST=0.0.0.0
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin resnet
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# 8001 is the gRPC port, served when RESNET_GRPC_PORT=8001 is set (docker-compose.yml sets it).
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
CMD ["resnet-service", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM serving AS runtime
# With OpenVINO installed, RESNET_RUNTIME=auto runs the model on it: faster than ONNX Runtime on the CPUs measured,
# in fp32, bf16 and INT8 (docs/performance.md). The extra is pinned by range in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install '.[openvino]' && rm -rf /app/src
COPY --from=export /models/resnet50.onnx /models/resnet50.onnx
USER 10001

# CUDA and cuDNN come as pip packages pinned to what onnxruntime-gpu was built against (its cuda and cudnn extras),
# so the base needs no CUDA of its own; the NVIDIA container runtime adds the driver. The settings are the ones
# measured best on one GPU with 16 cores, shared with Compose's gpu profile and deploy/k8s/gpu (gpu.env).
FROM serving AS gpu
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RESNET_DEVICE=cuda RESNET_WORKERS=4 RESNET_PREPROCESS_THREADS=4 RESNET_INTRA_OP_THREADS=4 \
    RESNET_MAX_BATCH_SIZE=32 RESNET_MAX_QUEUE=64
# The CPU onnxruntime is a plain dependency; swap it for the CUDA build, which provides the same module.
# hadolint ignore=DL3013
RUN pip install '.[gpu]' && pip uninstall -y onnxruntime \
    && pip install --force-reinstall --no-deps 'onnxruntime-gpu==1.31.1' \
    && rm -rf /app/src
COPY --from=export /models/resnet50.onnx /models/resnet50.onnx
USER 10001
# Each worker warms every batch size up on the GPU before the service reports ready: a longer start period.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]

# The last stage is what a plain `docker build .` produces: keep it the CPU runtime.
FROM runtime
