"""The Compose stack for real: a Docker engine, base images made from Debian packages, the images built from the
Dockerfile, and docker-compose.yml with deploy/compose.ci.yml up until both containers report healthy.

Everything is session-scoped and built once; the tests then talk to nginx's container on 127.0.0.1:8080/8081. A
failing test gets the containers' logs in its report.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, add_figure
from tests.support.compose_stack import (
    API_GRPC_PORT,
    API_PORT,
    NGINX_GRPC_PORT,
    NGINX_PORT,
    ComposeStack,
    busy_ports,
    render,
)
from tests.support.docker_engine import (
    DockerEngine,
    bridge_interfaces,
    docker_engine,
    network_interfaces,
)

RUN_DIR = ROOT / ".run" / "compose"
PROJECT = "resnet-ci"
_STACK = pytest.StashKey[ComposeStack]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    stack = item.config.stash.get(_STACK, None)
    if report.failed and stack is not None:
        report.sections.append(("docker compose logs", stack.logs()))
    return report


def _timed(config: pytest.Config, what: str, started: float) -> float:
    seconds = time.monotonic() - started
    add_figure(config, f"compose: {what} in {seconds:.1f} s")
    return seconds


@pytest.fixture(scope="session")
def engine(pytestconfig: pytest.Config) -> Iterator[DockerEngine]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    before = network_interfaces()
    started = time.monotonic()
    with docker_engine(RUN_DIR / "engine") as running:
        if running.own:
            _timed(pytestconfig, "our dockerd answered", started)
        yield running
        bridges = running.run("network", "ls", "--quiet", "--filter", "driver=bridge").stdout.split()
        assert bridges == [], f"the engine has bridge networks: {bridges}"
    left = bridge_interfaces(network_interfaces() - before)
    assert not left, f"network interfaces left behind: {sorted(left)}"


@pytest.fixture(scope="session")
def base_images(engine: DockerEngine, pytestconfig: pytest.Config) -> dict[str, str]:
    """PYTHON_IMAGE and NGINX_IMAGE from deploy/base-images/build.sh (reused when their recipe has not changed)."""
    started = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "deploy/base-images/build.sh")],
        env={**engine.env, "DOCKER": "docker", "WORK_DIR": str(RUN_DIR / "rootfs")},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"deploy/base-images/build.sh exited {result.returncode}:\n{result.stderr}"
    _timed(pytestconfig, "base images ready", started)
    return dict(line.split("=", 1) for line in result.stdout.split())


@pytest.fixture(scope="session")
def stack(engine: DockerEngine, base_images: dict[str, str], pytestconfig: pytest.Config) -> Iterator[ComposeStack]:
    busy = busy_ports((API_PORT, API_GRPC_PORT, NGINX_PORT, NGINX_GRPC_PORT))
    assert not busy, f"ports {busy} on 127.0.0.1 are taken: the stack needs 8000, 8001, 8080 and 8081 free"
    env = {**base_images, "MODEL_WEIGHTS": "random"}
    # Compose reads these from the environment; a developer's own values must not reach the check.
    env |= {name: "" for name in ("RESNET_OTEL_ENDPOINT",)}
    file = render(engine, [ROOT / "docker-compose.yml", ROOT / "deploy/compose.ci.yml"], env, RUN_DIR / "compose.yml")
    log = RUN_DIR / "compose.log"
    log.write_text("")
    running = ComposeStack(engine, file, PROJECT, env, log)
    pytestconfig.stash[_STACK] = running
    try:
        started = time.monotonic()
        running.compose("--progress", "plain", "build", timeout=1500)
        _timed(pytestconfig, "runtime image built from the Dockerfile (MODEL_WEIGHTS=random)", started)
        started = time.monotonic()
        running.compose("up", "--detach", "--wait", "--wait-timeout", "180", timeout=240)
        _timed(pytestconfig, "up --wait until both containers were healthy", started)
        yield running
    except Exception as exc:
        # A stack that never came up fails in setup, before any test report could carry the logs.
        raise AssertionError(f"{exc}\n--- docker compose logs ---\n{running.logs()}") from exc
    finally:
        started = time.monotonic()
        running.compose("down", "--timeout", "30", timeout=120, check=False)
        _timed(pytestconfig, "down", started)
        del pytestconfig.stash[_STACK]
        left = running.leftover_containers()
        assert not left, f"containers left after down: {left}"


@pytest.fixture(scope="session")
def nginx_url(stack: ComposeStack) -> str:
    return f"http://127.0.0.1:{NGINX_PORT}"
