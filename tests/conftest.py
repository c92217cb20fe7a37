"""Shared fixtures: a stand-in model, the exported ResNet-50 with its Keras reference, an app, a live server.

Most tests serve the stand-in (tests/support/stand_in_model.py), built in milliseconds. The Keras → ONNX export runs
once per session in its own process (about a minute, 7 GB peak), only for the tests that ask for it: they are
marked ``export`` at collection, and ``make test-fast`` leaves them out.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export import SpanExporter

from resnet_service import Settings, create_app
from resnet_service.process.probe import NotReady, wait_until_ready
from tests.support.images import write_parity_images
from tests.support.stand_in_model import write_stand_in_model

ROOT = Path(__file__).resolve().parents[1]
# The environment variables the service reads: its own, and OpenTelemetry's standard ones.
SETTING_PREFIXES = ("RESNET_", "OTEL_")
_FIGURES = pytest.StashKey[list[str]]()


def add_figure(config: pytest.Config, line: str) -> None:
    """Record a measured figure; all of them are printed in the run's summary, so CI logs show them."""
    config.stash.setdefault(_FIGURES, []).append(line)


@pytest.fixture
def report_figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    return lambda line: add_figure(request.config, f"{request.node.name}: {line}")


# `make test-fast` installs the [test] extra, without the browser driver; `make test` installs [dev], which has it.
collect_ignore = [] if importlib.util.find_spec("playwright") else ["browser"]

# The fixtures that need the real export; a test that uses one is an export test.
EXPORT_FIXTURES = frozenset({"keras_reference", "resnet50_path"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if EXPORT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.export)
        # The end-to-end tests run real servers; the fast tier stays in process.
        if item.path.is_relative_to(ROOT / "tests/e2e"):
            item.add_marker(pytest.mark.process)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    figures = config.stash.get(_FIGURES, [])
    if figures:
        terminalreporter.section("measured figures")
        for line in figures:
            terminalreporter.write_line(line)


@dataclass(frozen=True)
class KerasReference:
    """The session's exported model and what Keras gives for each parity image."""

    model_path: Path
    report: dict[str, object]
    images: dict[str, Path]
    inputs: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]
    top5: dict[str, list[tuple[str, float]]]
    # The same Keras model exported with --precision fp16, and that export's report.
    fp16_model_path: Path
    fp16_report: dict[str, object]


@pytest.fixture(scope="session")
def keras_reference(tmp_path_factory: pytest.TempPathFactory) -> KerasReference:
    images = write_parity_images(tmp_path_factory.mktemp("parity-images"))
    out = tmp_path_factory.mktemp("keras-reference")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests/support/keras_reference.py"),
            "--images",
            str(next(iter(images.values())).parent),
            "--out",
            str(out),
        ],
        check=True,
        timeout=900,
    )
    recorded = np.load(out / "keras.npz")
    names = [str(name) for name in recorded["names"]]
    return KerasReference(
        model_path=out / "resnet50.onnx",
        report=json.loads((out / "report.json").read_text()),
        images=images,
        inputs={name: recorded["inputs"][i] for i, name in enumerate(names)},
        probabilities={name: recorded["probabilities"][i] for i, name in enumerate(names)},
        top5={
            name: [(label, p) for label, p in pairs]
            for name, pairs in json.loads((out / "keras_top5.json").read_text()).items()
        },
        fp16_model_path=out / "resnet50.fp16.onnx",
        fp16_report=json.loads((out / "report.fp16.json").read_text()),
    )


@pytest.fixture(scope="session")
def resnet50_path(keras_reference: KerasReference) -> Path:
    """ResNet-50 as `make model` exports it (random weights here)."""
    return keras_reference.model_path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in classifier: the service's contract at almost no cost per image."""
    return write_stand_in_model(tmp_path_factory.mktemp("stand-in") / "stand-in.onnx")


@pytest.fixture(scope="session")
def slow_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in at about ResNet-50's cost per image, for tests that need a queue to fill."""
    return write_stand_in_model(tmp_path_factory.mktemp("slow-stand-in") / "slow-stand-in.onnx", conv_layers=10)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RESNET_* (or OpenTelemetry OTEL_*) setting of the developer's reaches the Settings a test builds."""
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture
def settings(model_path: Path, clean_env: None) -> Settings:
    return Settings(model_path=model_path)


@pytest.fixture(scope="module")
def client(model_path: Path) -> Iterator[TestClient]:
    """One served app per test module, on the stand-in model and the default settings; tests that change the
    settings build their own."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith(SETTING_PREFIXES):
                monkeypatch.delenv(name)
        # Inside `with`, the lifespan runs: the real model loads and warms up.
        with TestClient(create_app(Settings(model_path=model_path))) as test_client:
            yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    started_at: float
    ready_after_s: float
    grpc_address: str | None = None  # host:port, when the server was started with RESNET_GRPC_PORT


def serve_command(model: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "resnet_service.process.cli", "serve", "--port", str(port), "--model", str(model)]


def server_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without any RESNET_* or OTEL_* setting of the developer's, plus ``env``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}, **(env or {})}


def start_server(
    model: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    log: Path | None = None,
    stderr: Path | None = None,
) -> LiveServer:
    """`resnet-service serve` in its own process, returned once /health/ready answers 200.

    Its output goes to ``log`` (stdout and stderr together), or with ``stderr`` also given, stderr goes there.
    """
    port = free_port()
    started = time.monotonic()
    sink = log.open("wb") if log is not None else None
    error_sink = stderr.open("wb") if stderr is not None else None
    process = subprocess.Popen(
        serve_command(model, port),
        env=server_env(env),
        stdout=sink,
        stderr=error_sink or (subprocess.STDOUT if sink else None),
    )
    for opened in (sink, error_sink):
        if opened is not None:
            opened.close()  # the child holds its own descriptor
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/health/ready", process, timeout, interval=0.05)
    except NotReady:
        process.kill()
        raise
    return LiveServer(url, process, started, time.monotonic() - started)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def live_server(model_path: Path) -> Iterator[LiveServer]:
    grpc_port = free_port()
    server = start_server(model_path, env={"RESNET_GRPC_PORT": str(grpc_port)})
    server = dataclasses.replace(server, grpc_address=f"127.0.0.1:{grpc_port}")
    yield server
    stop_server(server)


@dataclass
class ThreadedServer:
    """Real uvicorn on a real socket, in a thread of the test process, so a test can read the app's state."""

    url: str
    app: FastAPI


@contextmanager
def threaded_server(settings: Settings, span_exporter: SpanExporter | None = None) -> Iterator[ThreadedServer]:
    app = create_app(settings, span_exporter=span_exporter)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield ThreadedServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
