"""A fault inside ONNX Runtime's session run: a JSON 500 with a request id, a logged traceback, and a server
that stays up and ready. The fault is real: a model that ONNX Runtime fails to run on any photo."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from tests.support.errors import assert_error
from tests.support.faulty_model import write_faulty_model
from tests.support.images import encode, photo


def test_a_failing_session_run_is_a_json_500_with_a_request_id_logged_with_its_traceback(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faulty = settings.model_copy(
        # The model fails inside ONNX Runtime; OpenVINO's Gather clamps the index instead of failing.
        update={"model_path": write_faulty_model(tmp_path / "faulty.onnx"), "runtime": "onnxruntime"}
    )
    with TestClient(create_app(faulty)) as client:
        assert client.get("/health/ready").status_code == 200  # the warm-up's zeros ran
        with caplog.at_level(logging.ERROR, logger="resnet_service"):
            response = client.post(
                "/predict",
                files={"image": ("c.jpg", encode(photo("chelsea"), "JPEG"))},
                headers={"X-Request-ID": "f-1"},
            )
        assert_error(response, 500, "inference_failed")
        assert response.json()["error"]["request_id"] == "f-1"
        assert "the model failed to run" in response.json()["error"]["message"]
        (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "f-1" in record.getMessage() and record.exc_info is not None
        assert "Gather" in caplog.text  # ONNX Runtime's own error, with the traceback, is in the log
        assert client.get("/health/ready").status_code == 200
        assert client.post("/predict", files={"image": ("x.jpg", b"not an image")}).status_code == 400
