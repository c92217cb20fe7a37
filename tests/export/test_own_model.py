"""Your own classifier: a fine-tuned ResNet-50 with a 7-class head, exported with its label file and served.

The session's reference process (tests/support/keras_reference.py) builds the model, saves it with model.save and
runs the export's command line on it three times: with its labels, with a label file one name short, and with
none. Everything below reads what those runs left.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from resnet_service.core.errors import StartupError
from resnet_service.export.own_model import OwnModelRefused, read_labels
from resnet_service.inference.model_contract import labels_digest
from tests.conftest import KerasReference
from tests.support.images import encode, photo
from tests.support.keras_reference import FINETUNED_LABELS

pytestmark = pytest.mark.export

EXIT_REFUSED = 2


@pytest.fixture(scope="module")
def exports(keras_reference: KerasReference) -> Path:
    return keras_reference.model_path.parent


def test_the_export_refuses_a_label_file_of_the_wrong_length_or_none_before_writing(exports: Path) -> None:
    codes = json.loads((exports / "finetuned.json").read_text())
    assert codes == {"cats": 0, "short": EXIT_REFUSED, "unlabelled": EXIT_REFUSED}
    assert not (exports / "short.onnx").exists() and not (exports / "unlabelled.onnx").exists()


def test_the_file_carries_its_labels_and_its_parity_with_keras(exports: Path) -> None:
    session = ort.InferenceSession(str(exports / "cats.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == list(FINETUNED_LABELS) and meta["num_classes"] == "7"
    assert float(meta["parity_max_abs_diff"]) <= 1e-5 and meta["parity_top5_match"] == "true"
    assert meta["weights"].startswith("file cats.keras sha256=") and meta["random_weights"] == "false"
    assert session.get_outputs()[0].shape == ["batch", 7]


def test_the_service_answers_with_the_models_own_classes(exports: Path, settings: Settings) -> None:
    own = settings.model_copy(update={"model_path": exports / "cats.onnx"})
    jpeg = encode(photo("chelsea"), "JPEG")
    with TestClient(create_app(own)) as client:
        answer = client.post("/predict", files={"image": ("cat.jpg", jpeg)}).json()
        assert answer["success"] is True and len(answer["predictions"]) == 5
        assert {p["label"] for p in answer["predictions"]} <= set(FINETUNED_LABELS)
        # Asked for more than the model has, it answers with all seven, summing to one.
        every = client.post("/predict?top_k=10", files={"image": ("cat.jpg", jpeg)}).json()["predictions"]
        assert sorted(p["label"] for p in every) == sorted(FINETUNED_LABELS)
        assert abs(sum(p["probability"] for p in every) - 1.0) < 1e-5
        assert client.get("/v2/models/resnet50").json()["outputs"][0]["shape"] == [-1, 7]
        assert json.loads(client.get("/health").json()["model"]["metadata"]["labels"]) == list(FINETUNED_LABELS)


def test_a_model_whose_labels_do_not_match_its_outputs_does_not_start(
    exports: Path, settings: Settings, tmp_path: Path
) -> None:
    model = onnx.load(str(exports / "cats.onnx"))
    props = {prop.key: prop.value for prop in model.metadata_props}
    props["labels"] = json.dumps(list(FINETUNED_LABELS[:6]))
    props["labels_sha256"] = labels_digest(FINETUNED_LABELS[:6])
    onnx.helper.set_model_props(model, props)
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    app = create_app(settings.model_copy(update={"model_path": broken}))
    with pytest.raises(StartupError, match="has 7 outputs but names 6 classes"), TestClient(app):
        pass


def test_label_files_are_lines_a_json_list_or_a_class_index(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("cat\n\ndog\n")
    (tmp_path / "b.json").write_text(json.dumps(["cat", "dog"]))
    (tmp_path / "c.json").write_text(json.dumps({"1": ["n2", "dog"], "0": ["n1", "cat"]}))
    for name in ("a.txt", "b.json", "c.json"):
        assert read_labels(tmp_path / name) == ["cat", "dog"]
    (tmp_path / "twice.txt").write_text("cat\ncat\n")
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "gap.json").write_text(json.dumps({"0": "cat", "2": "dog"}))
    for name, problem in (("twice.txt", "appear twice"), ("empty.txt", "no class names"), ("gap.json", "keys")):
        with pytest.raises(OwnModelRefused, match=problem):
            read_labels(tmp_path / name)
