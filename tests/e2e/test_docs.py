"""Every copy-paste example in the README and docs/, run as written against a live server.

Plain ``` blocks hold commands to copy one by one: each `curl` line aimed at `make run`'s port 8000 and the
`resnet-service predict` line run here. ```python blocks run whole, and so does the one ```bash sequence (your own
classifier, in docs/model.md).
"""

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

PAGES = {
    path.relative_to(ROOT).as_posix(): path.read_text() for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
}


def _fenced(text: str) -> list[tuple[str, str]]:
    """Each fenced block's language (empty for a plain fence) and text, fences paired in order."""
    blocks, language, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(lines) + "\n"))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def _blocks(language: str) -> list[tuple[str, str]]:
    return [(page, block) for page, text in sorted(PAGES.items()) for kind, block in _fenced(text) if kind == language]


COMMAND_LINES = [(page, line) for page, block in _blocks("") for line in block.splitlines()]
CURL_LINES = [(page, line) for page, line in COMMAND_LINES if line.startswith("curl ") and "localhost:8000" in line]
CLI_LINES = [(page, line) for page, line in COMMAND_LINES if line.startswith("resnet-service predict ")]
PYTHON_BLOCKS = _blocks("python")
(OWN_SEQUENCE,) = [block for page, block in _blocks("bash") if page == "docs/model.md"]


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


def test_the_pages_have_examples_for_every_interface() -> None:
    curl = [line for _, line in CURL_LINES]
    readme_curl = [line for page, line in CURL_LINES if page == "README.md"]
    assert "curl -F image=@dog.jpg http://localhost:8000/predict" in readme_curl
    assert any("-F image=@dog.jpg -F image=@cat.jpg" in line for line in curl)
    assert any("--data-binary @dog.jpg" in line for line in curl)
    assert any("application/json" in line and "base64" in line for line in curl)
    assert any("/v2/models/resnet50/infer" in line for line in curl)
    assert any("/metrics" in line for line in curl)
    assert any("tritonclient.http" in block for _, block in PYTHON_BLOCKS)
    assert any("tritonclient.grpc" in block for _, block in PYTHON_BLOCKS)
    assert any("import httpx" in block for page, block in PYTHON_BLOCKS if page == "README.md")
    assert any(
        line.startswith("resnet-service predict dog.jpg cat.jpg") for page, line in CLI_LINES if page == "README.md"
    )
    assert "RESNET_LOG_FORMAT=json" in PAGES["docs/operations.md"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(("page", "line"), CURL_LINES)
def test_curl_example(live_server: LiveServer, folder: Path, page: str, line: str) -> None:
    output = _run(line.replace("http://localhost:8000", live_server.url), folder, shell=True).stdout
    if "/metrics" in line:
        assert re.search(r"^resnet_requests_total\{.*\} \d", output, flags=re.MULTILINE), output
        return
    answer = json.loads(output)
    top_k = int(re.search(r"top_k=(\d+)", line).group(1)) if "top_k=" in line else 5
    if "/predict" in line and "image=@cat.jpg" in line:
        assert [len(result["predictions"]) for result in answer] == [top_k, top_k]
    elif "/predict" in line:
        assert answer["success"] is True and len(answer["predictions"]) == top_k
    elif line.endswith("/v2/models/resnet50"):
        assert answer["name"] == "resnet50"
    else:
        (top,) = answer["outputs"]
        assert top["shape"] == [1, 3] and all(len(entry.split(":")) == 3 for entry in top["data"])


@pytest.mark.parametrize(("page", "code"), PYTHON_BLOCKS)
def test_python_example(live_server: LiveServer, folder: Path, page: str, code: str) -> None:
    address = live_server.url.removeprefix("http://")
    assert live_server.grpc_address is not None
    code = code.replace("localhost:8000", address).replace("localhost:8001", live_server.grpc_address)
    output = _run([sys.executable, "-c", code], folder).stdout
    lines = output.splitlines()
    if "tritonclient" in code:
        # Two images, their top 3 each, as "score:index:label" strings.
        assert len(lines) == 2 and all(len(ast.literal_eval(line)) == 3 for line in lines), output
    else:
        # One image's top 5: a label and its probability per line.
        assert len(lines) == 5 and all(0 < float(line.split()[-1]) <= 1 for line in lines), output


@pytest.mark.parametrize(("page", "line"), CLI_LINES)
def test_cli_example(model_path: Path, folder: Path, page: str, line: str) -> None:
    executable = Path(sys.executable).parent / "resnet-service"
    command = [str(executable), *line.split()[1:]]
    output = _run(command, folder, env={**os.environ, "RESNET_MODEL_PATH": str(model_path)}).stdout
    assert [len(json.loads(answer)["predictions"]) for answer in output.splitlines()] == [3, 3]


def test_the_own_classifier_sequence_runs_as_written(keras_reference: KerasReference, tmp_path: Path) -> None:
    """Build, export and serve a 7-class model beside ResNet-50, as docs/model.md says, then classify with it."""
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


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_pages_leads_to_a_file_and_a_heading_there() -> None:
    broken = []
    for page, text in PAGES.items():
        for target in re.findall(r"\]\(([^)#:\s]*)(?:#([^)\s]+))?\)", text):
            path, anchor = target
            file = (ROOT / page).parent / path if path else ROOT / page
            if not file.exists():
                broken.append(f"{page}: {path} does not exist")
            elif anchor:
                headings = re.findall(r"^#+ (.*)$", file.read_text(), flags=re.MULTILINE)
                if anchor not in {_anchor(heading) for heading in headings}:
                    broken.append(f"{page}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert broken == []
