"""KEDA objects checked against KEDA's own API schema, offline, strictly.

The schema comes from npm's ``@kubernetes-models/keda`` (generated from KEDA's Go API types), installed by
``make tools`` into ``.tools/``. Its compiled validator checks types, required fields and enums but lets unknown
fields through, as the API server would not under ``kubectl apply --validate=strict``; the unknown fields are
found here from the package's own type declarations, and the embedded HorizontalPodAutoscaler behavior is checked
with kubernetes-validate's schema.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate

__all__ = ["KUBERNETES_VERSION", "assert_valid", "keda_problems"]

# The Kubernetes release whose schemas (kubernetes-validate's) every object is held to.
KUBERNETES_VERSION = "1.30.0"

_VALIDATOR = Path(__file__).with_name("keda_schema.mjs")
_LONG_PREFIX = "IComGithubKedacoreKedaV2ApisKedaV1alpha1"
_INTERFACE = re.compile(r"^export interface (I\w+)(?: extends [\w, ]+)? \{\n(.*?)^\}", re.M | re.S)
_FIELD = re.compile(r'^    "(\w+)"\??: (.+?);?$', re.M)


@cache
def _declared(types_dir: Path) -> dict[str, dict[str, str]]:
    """Interface name → {field: its declared type}, for every KEDA type the package declares."""
    interfaces = {}
    for path in types_dir.glob("*.d.ts"):
        for name, body in _INTERFACE.findall(path.read_text()):
            interfaces[name] = dict(_FIELD.findall(body))
    return interfaces


def _unknown_fields(value: Any, interface: str, interfaces: dict[str, dict[str, str]], at: str) -> list[str]:
    fields = interfaces[interface]
    problems = [f"{at}/{key}: not a field of {interface[1:]}" for key in value if key not in fields]
    for key, declared in fields.items():
        if key not in value:
            continue
        element = re.fullmatch(r"Array<(\w+)>", declared)
        name = (element.group(1) if element else declared).replace(_LONG_PREFIX, "I")
        if name not in interfaces:
            continue  # a string, a number, a map of strings, or a type from outside KEDA
        items = value[key] if element else [value[key]]
        for index, item in enumerate(items):
            where = f"{at}/{key}/{index}" if element else f"{at}/{key}"
            problems += _unknown_fields(item, name, interfaces, where)
    return problems


def _behavior_problems(document: dict[str, Any]) -> list[str]:
    """The HorizontalPodAutoscaler behavior a ScaledObject passes on, against Kubernetes' own schema."""
    config = document.get("spec", {}).get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
    if "behavior" not in config:
        return []
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "behavior"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "x"},
            "maxReplicas": 1,
            "behavior": config["behavior"],
        },
    }
    try:
        kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"spec/advanced/horizontalPodAutoscalerConfig/behavior: {exc.message}"]
    return []


def keda_problems(documents: list[dict[str, Any]], node_modules: Path) -> list[str]:
    """What is wrong with these keda.sh/v1alpha1 objects; empty when each is valid."""
    node = shutil.which("node")
    assert node is not None, "node is needed to run KEDA's schema (make tools installs it with npm)"
    done = subprocess.run(
        [node, str(_VALIDATOR), str(node_modules)], input=json.dumps(documents), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    problems: list[str] = json.loads(done.stdout)
    interfaces = _declared(node_modules / "@kubernetes-models/keda/keda.sh/v1alpha1")
    for index, document in enumerate(documents):
        if f"I{document['kind']}" in interfaces:
            problems += _unknown_fields(document, f"I{document['kind']}", interfaces, f"document {index}")
        problems += _behavior_problems(document)
    return problems


def assert_valid(documents: list[dict[str, Any]], node_modules: Path) -> None:
    """Every object strictly valid: KEDA's against KEDA's schema, the rest against Kubernetes'."""
    keda = [document for document in documents if document["apiVersion"].startswith("keda.sh/")]
    for document in documents:
        if document not in keda:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert keda_problems(keda, node_modules) == []
