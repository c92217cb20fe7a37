"""Structured logs: one line per request on stdout, with its request id, route, sizes and stage timings."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import start_server, stop_server
from tests.support.images import encode, photo

JPEG = encode(photo("chelsea"), "JPEG", quality=90)


def _serve_and_send(model_path: Path, tmp_path: Path, log_format: str) -> tuple[list[str], str]:
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    server = start_server(model_path, env={"RESNET_LOG_FORMAT": log_format}, log=stdout, stderr=stderr)
    try:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
            ok = http.post("/predict", files={"image": ("c.jpg", JPEG)}, headers={"X-Request-ID": "trace-42"})
            assert ok.status_code == 200
            files = [("image", ("a.jpg", JPEG)), ("image", ("b.jpg", JPEG))]
            assert http.post("/predict", files=files, headers={"X-Request-ID": "trace-43"}).status_code == 200
            bad = http.post("/predict", files={"image": ("t.txt", b"text")}, headers={"X-Request-ID": "trace-44"})
            assert bad.status_code == 400
    finally:
        stop_server(server)
    return stdout.read_text().splitlines(), stderr.read_text()


def test_json_logs_are_one_object_per_line_with_one_access_line_per_request(model_path: Path, tmp_path: Path) -> None:
    lines, stderr = _serve_and_send(model_path, tmp_path, "json")
    assert stderr == ""
    records = [json.loads(line) for line in lines]  # every line, uvicorn's startup lines included, is JSON
    assert any("RANDOM weights" in record["message"] for record in records)
    access = {record["request_id"]: record for record in records if record["logger"] == "resnet_service.access"}
    one = access["trace-42"]
    assert one["route"] == "/predict" and one["method"] == "POST" and one["status"] == 200
    assert one["bytes_in"] > len(JPEG) and one["bytes_out"] > 100 and one["client_ip"] == "127.0.0.1"
    assert one["images"] == 1 and one["image_size"] == "451x300" and one["batch_size"] >= 1
    for stage in ("queue_ms", "preprocess_ms", "inference_ms", "duration_ms"):
        assert isinstance(one[stage], float) and one[stage] >= 0, stage
    assert one["preprocess_ms"] > 0 and one["inference_ms"] > 0
    assert one["duration_ms"] >= one["preprocess_ms"] + one["inference_ms"]
    assert access["trace-43"]["images"] == 2 and access["trace-43"]["image_size"] == "451x300,451x300"
    failed = access["trace-44"]
    assert failed["status"] == 400 and failed["images"] == 0 and failed["inference_ms"] is None
    # Each request is logged exactly once (uvicorn's own access line is off), readiness probes included.
    ids = [record["request_id"] for record in records if record["logger"] == "resnet_service.access"]
    assert sorted(i for i in ids if i.startswith("trace-")) == ["trace-42", "trace-43", "trace-44"]
    assert any(record.get("route") == "/health/ready" for record in records)


def test_text_logs_carry_the_same_fields(model_path: Path, tmp_path: Path) -> None:
    lines, _ = _serve_and_send(model_path, tmp_path, "text")
    (line,) = [line for line in lines if "request_id=trace-42" in line]
    assert "POST /predict 200" in line
    for field in ("route=/predict", "status=200", "image_size=451x300", "queue_ms=", "inference_ms=", "client_ip="):
        assert field in line, field
