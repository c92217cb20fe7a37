"""The ``resnet-service`` command line, run as a user runs it: a separate process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import server_env
from tests.support.images import encode, photo


def _cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resnet_service.process.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env=server_env(),
        stdin=subprocess.DEVNULL,
    )


def test_predict_prints_the_seed_json_per_file_as_the_server_answers(
    model_path: Path, tmp_path: Path, client: TestClient
) -> None:
    cat, coffee = tmp_path / "cat.jpg", tmp_path / "coffee.png"
    cat.write_bytes(encode(photo("chelsea"), "JPEG", quality=90))
    coffee.write_bytes(encode(photo("coffee"), "PNG"))
    result = _cli("predict", str(cat), str(coffee), "--model", str(model_path), "--top-k", "3")
    assert result.returncode == 0, result.stderr
    assert "RANDOM weights" in result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    for answer, path in zip(answers, (cat, coffee), strict=True):
        served = client.post("/predict?top_k=3", files={"image": (path.name, path.read_bytes())}).json()
        assert list(answer) == ["predictions", "success"] and answer["success"] is True
        assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in served["predictions"]]
        # Both run the same preprocessing and model; batches of one either way, so equal to float32 rounding.
        for ours, theirs in zip(answer["predictions"], served["predictions"], strict=True):
            assert ours["probability"] == pytest.approx(theirs["probability"], abs=1e-6)


def test_predict_reports_each_bad_file_and_exits_1(model_path: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    good = tmp_path / "cat.jpg"
    good.write_bytes(encode(photo("chelsea"), "JPEG"))
    result = _cli("predict", str(text), str(tmp_path / "missing.jpg"), str(good), "--model", str(model_path))
    assert result.returncode == 1
    bad, missing, fine = (json.loads(line) for line in result.stdout.splitlines())
    assert bad["success"] is False and bad["error"]["code"] == "invalid_image" and str(text) in bad["error"]["message"]
    assert missing["success"] is False and "No such file" in missing["error"]["message"]
    assert fine["success"] is True and len(fine["predictions"]) == 5


def test_predict_without_a_model_says_how_to_make_one(tmp_path: Path) -> None:
    result = _cli("predict", "x.jpg", "--model", str(tmp_path / "none.onnx"))
    assert result.returncode == 3 and result.stdout == ""
    assert "not found: run `make model`" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ((), "{serve,predict,export}"),
        (("serve",), "--port"),
        (("predict",), "--top-k"),
        (("export",), "--weights"),
    ],
)
def test_help_of_every_command_is_useful(command: tuple[str, ...], expected: str) -> None:
    result = _cli(*command, "--help")
    assert result.returncode == 0 and expected in result.stdout, result.stdout + result.stderr


def test_the_command_line_loads_no_serving_library_until_a_command_runs() -> None:
    # What makes `resnet-service --help` answer at once: the package and the CLI import only the standard library.
    heavy = ("onnxruntime", "fastapi", "numpy", "PIL")
    code = f"import sys, resnet_service.process.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=server_env())
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_public_text_speaks_to_users_without_project_history_words(tmp_path: Path) -> None:
    from bench.null_model import write_null_model
    from resnet_service import Settings, create_app

    helps = [_cli(*command, "--help").stdout for command in ([], ["serve"], ["predict"], ["export"])]
    settings = Settings(model_path=write_null_model(tmp_path / "null.onnx"))
    with TestClient(create_app(settings)) as client:
        texts = [*helps, client.get("/openapi.json").text, client.get("/").text]
    for text in texts:
        assert len(text) > 200
        assert not re.search(r"\bthe seed\b|\bseed's\b", text, flags=re.IGNORECASE), text
