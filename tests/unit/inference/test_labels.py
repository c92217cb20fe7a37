from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from resnet_service.inference.labels import Labels

SHARED_INDEX = Path(__file__).resolve().parents[4] / "shared/data/imagenet_class_index.json"


def test_packaged_index_has_the_canonical_keras_names_in_order() -> None:
    labels = Labels.load()
    assert len(labels.names) == 1000
    assert labels.names[0] == "tench" and labels.names[248] == "Eskimo_dog" and labels.names[999] == "toilet_tissue"


@pytest.mark.skipif(not SHARED_INDEX.exists(), reason="the shared data folder sits beside checkouts only")
def test_packaged_index_is_the_shared_canonical_file() -> None:
    shared = json.loads(SHARED_INDEX.read_text())
    assert Labels.load().names == tuple(shared[str(i)][1] for i in range(1000))


def test_top_k_orders_by_probability_and_widens_float32() -> None:
    probabilities = np.zeros(1000, dtype=np.float32)
    probabilities[[3, 248, 7]] = [0.2, 0.5135327577590942, 0.1]
    top = Labels.load().top_k(probabilities, 3)
    assert [label for label, _ in top] == ["Eskimo_dog", "tiger_shark", "cock"]
    assert top[0][1] == float(np.float32(0.5135327577590942))
    assert all(type(p) is float for _, p in top)


def test_top_k_refuses_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="expected 1000"):
        Labels.load().top_k(np.zeros(10, dtype=np.float32), 5)
