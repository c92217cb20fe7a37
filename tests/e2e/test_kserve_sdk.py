"""KServe's own Python SDK (``kserve``) against a real server: REST with base64, gRPC with the image's bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from resnet_service import Settings
from tests.conftest import ROOT, ThreadedServer, free_port, threaded_server
from tests.support.images import encode, photo

CAT = encode(photo("chelsea"), "JPEG", quality=90)


@pytest.fixture(scope="module")
def served(model_path: Path) -> Iterator[tuple[ThreadedServer, int]]:
    port = free_port()
    with threaded_server(Settings(model_path=model_path, grpc_port=port)) as server:
        yield server, port


def test_both_clients_get_what_predict_gives_and_rest_needs_base64(
    served: tuple[ThreadedServer, int], tmp_path: Path
) -> None:
    server, port = served
    image = tmp_path / "cat.jpg"
    image.write_bytes(CAT)
    script = ROOT / "tests/support/kserve_client.py"
    done = subprocess.run(
        [sys.executable, str(script), server.url, f"127.0.0.1:{port}", str(image)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    predicted = httpx.post(f"{server.url}/predict", files={"image": ("cat.jpg", CAT)}, params={"top_k": 1000})
    by_class = sorted(predicted.json()["predictions"], key=lambda p: p["label"])
    for transport in ("rest", "grpc"):
        (row,) = answers[transport]
        assert len(row) == 1000
        assert np.allclose(sorted(row), sorted(p["probability"] for p in by_class), atol=1e-6), transport
    assert answers["grpc_output"] == ["probabilities", "FP32", [1, 1000]]
    assert answers["rest"] == answers["grpc"]
    # The SDK's REST client writes JSON and cannot put bytes in it (docs/api.md says to send base64).
    assert "not JSON serializable" in answers["rest_raw_bytes_refused"]
