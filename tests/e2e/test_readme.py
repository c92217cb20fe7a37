"""Every copy-paste example of the README's Interfaces section, run as written against a live server."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, KerasReference, LiveServer, free_port
from tests.support.images import encode, photo

README = (ROOT / "README.md").read_text()
INTERFACES = README[README.index("## Interfaces") :]
INTERFACES = INTERFACES[: INTERFACES.index("\n## ", 1)]
CURL_LINES = re.findall(r"^curl .*localhost:8000.*$", INTERFACES, flags=re.MULTILINE)
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", INTERFACES, flags=re.DOTALL)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "dog.jpg").write_bytes(encode(photo("chelsea"), "JPEG"))
    (tmp_path / "cat.jpg").write_bytes(encode(photo("astronaut"), "JPEG"))
    return tmp_path


def _run(command: str | list[str], folder: Path, **options: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, **options
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_section_has_examples_for_every_interface() -> None:
    assert any("-F image=@dog.jpg -F image=@cat.jpg" in line for line in CURL_LINES)
    assert any("--data-binary @dog.jpg" in line for line in CURL_LINES)
    assert any("application/json" in line and "base64" in line for line in CURL_LINES)
    assert any("/v2/models/resnet50/infer" in line for line in CURL_LINES)
    assert any("/metrics" in line for line in CURL_LINES)
    assert any("tritonclient" in block for block in PYTHON_BLOCKS)
    assert "resnet-service predict dog.jpg cat.jpg" in INTERFACES and "RESNET_LOG_FORMAT=json" in INTERFACES


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("line", CURL_LINES)
def test_curl_example(live_server: LiveServer, folder: Path, line: str) -> None:
    output = _run(line.replace("http://localhost:8000", live_server.url), folder, shell=True).stdout
    if "/metrics" in line:
        assert re.search(r"^resnet_requests_total\{.*\} \d", output, flags=re.MULTILINE), output
        return
    answer = json.loads(output)
    if "/predict" in line and "image=@cat.jpg" in line:
        assert [len(result["predictions"]) for result in answer] == [3, 3]
    elif "/predict" in line:
        assert answer["success"] is True and len(answer["predictions"]) == 3
    elif line.endswith("/v2/models/resnet50"):
        assert answer["name"] == "resnet50"
    else:
        (top,) = answer["outputs"]
        assert top["shape"] == [1, 3] and all(len(entry.split(":")) == 3 for entry in top["data"])


@pytest.mark.parametrize("code", PYTHON_BLOCKS)
def test_python_example(live_server: LiveServer, folder: Path, code: str) -> None:
    address = live_server.url.removeprefix("http://")
    output = _run([sys.executable, "-c", code.replace("localhost:8000", address)], folder).stdout
    lines = output.splitlines()
    assert len(lines) == 2 and all(len(ast.literal_eval(line)) == 3 for line in lines), output


def test_cli_example(model_path: Path, folder: Path) -> None:
    (line,) = re.findall(r"^resnet-service predict .*$", INTERFACES, flags=re.MULTILINE)
    executable = Path(sys.executable).parent / "resnet-service"
    command = [str(executable), *line.split()[1:]]
    output = _run(command, folder, env={**os.environ, "RESNET_MODEL_PATH": str(model_path)}).stdout
    assert [len(json.loads(answer)["predictions"]) for answer in output.splitlines()] == [3, 3]


OWN = README[README.index("### Your own classifier") :]
(OWN_SEQUENCE,) = re.findall(r"```bash\n(.*?)```", OWN[: OWN.index("\n### ", 1)], flags=re.DOTALL)


def test_the_own_classifier_sequence_runs_as_written(keras_reference: KerasReference, tmp_path: Path) -> None:
    """Build, export and serve a 7-class model beside ResNet-50, as the README says, then classify with it."""
    notop = keras_reference.model_path.parent / "resnet50_notop.weights.h5"
    port = free_port()
    # The only changes: this environment's executables, the ImageNet weights (not downloadable here) replaced by
    # the session's random ones, and a free port.
    substitutions = {
        ".venv/bin/": f"{Path(sys.executable).parent}/",
        'weights="imagenet"': f'weights="{notop}"',
        "localhost:8000": f"127.0.0.1:{port}",
        "--port 8000": f"--port {port}",
    }
    script = OWN_SEQUENCE
    for old, new in substitutions.items():
        assert old in script, old
        script = script.replace(old, new)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "resnet50.onnx").symlink_to(keras_reference.model_path)
    (tmp_path / "cat.jpg").write_bytes(encode(photo("chelsea"), "JPEG"))
    log = tmp_path / "sequence.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESNET_")}
    # Popen, not run: the server the sequence starts in the background keeps its output open after bash exits.
    with log.open("wb") as sink:
        shell = subprocess.Popen(
            ["bash", "-euc", script],
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        assert shell.wait(timeout=600) == 0, log.read_text()
        models = {m["name"]: m for m in httpx.get(f"http://127.0.0.1:{port}/models", trust_env=False).json()}
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
    # The server's log shares the output, and curl ends its answer without a newline: the answer is the JSON value
    # at the start of its line.
    lines = [line for line in log.read_text().splitlines() if line.startswith('{"predictions"')]
    (answer,) = [json.JSONDecoder().raw_decode(line)[0] for line in lines]
    cats = ["tabby", "tiger", "siamese", "persian", "sphynx", "lynx", "ocelot"]
    assert answer["success"] is True and {p["label"] for p in answer["predictions"]} <= set(cats)
    assert models["cats"]["labels"] == cats and models["resnet50"]["default"] is True
