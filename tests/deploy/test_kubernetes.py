"""The kustomize base, validated strictly against the Kubernetes schemas that kubernetes-validate ships."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

BASE = ROOT / "deploy/k8s"
KUBERNETES_VERSION = "1.30.0"


def _kustomization() -> dict:
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


def _resources() -> dict[str, dict]:
    documents = {}
    for name in _kustomization()["resources"]:
        document = yaml.safe_load((BASE / name).read_text())
        documents[document["kind"]] = document
    return documents


def test_kustomization_lists_every_manifest_in_the_folder() -> None:
    on_disk = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(_kustomization()["resources"]) == on_disk


@pytest.mark.parametrize("name", sorted(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_manifest_validates_strictly(name: str) -> None:
    document = yaml.safe_load((BASE / name).read_text())
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = _resources()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_base_has_every_required_kind() -> None:
    assert set(_resources()) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }


def test_deployment_probes_limits_and_security() -> None:
    resources = _resources()
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["envFrom"] == [{"configMapRef": {"name": resources["ConfigMap"]["metadata"]["name"]}}]
    assert resources["ConfigMap"]["data"]["RESNET_INTRA_OP_THREADS"] == str(int(limits["cpu"]))


def test_hpa_scales_the_deployment_on_cpu_and_the_pdb_keeps_one_pod() -> None:
    resources = _resources()
    hpa = resources["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == resources["Deployment"]["metadata"]["name"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu" and hpa["minReplicas"] >= 2
    assert resources["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def test_service_targets_the_pods_http_port() -> None:
    resources = _resources()
    service = resources["Service"]["spec"]
    pod_labels = resources["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    assert service["ports"][0]["targetPort"] == "http"


def test_the_deployment_page_explains_scaling_out() -> None:
    page = (Path(ROOT) / "docs/deployment.md").read_text()
    assert "HorizontalPodAutoscaler" in page and "--scale api=" in page


GPU = BASE / "gpu"


def _merged(base: object, patch: object) -> object:
    """A strategic merge as kustomize makes one for these patches: maps merge, containers merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {key: _merged(base[key], value) if key in base else value for key, value in patch.items()} | {
            key: value for key, value in base.items() if key not in patch
        }
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(item, dict) for item in base + patch):
        named = {item["name"]: item for item in patch}
        return [_merged(item, named[item["name"]]) if item["name"] in named else item for item in base]
    return patch


def _gpu_resources() -> dict[str, dict]:
    overlay = yaml.safe_load((GPU / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../"]
    resources = _resources()
    (generator,) = overlay["configMapGenerator"]
    assert generator["name"] == resources["ConfigMap"]["metadata"]["name"] and generator["behavior"] == "merge"
    for env_file in generator["envs"]:
        resources["ConfigMap"]["data"].update(line.split("=", 1) for line in (GPU / env_file).read_text().split())
    for patch in overlay["patches"]:
        document = yaml.safe_load((GPU / patch["path"]).read_text())
        resources[document["kind"]] = _merged(resources[document["kind"]], document)
    return resources


def test_the_gpu_overlay_asks_for_one_gpu_and_validates_strictly() -> None:
    resources = _gpu_resources()
    for document in resources.values():
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    (container,) = resources["Deployment"]["spec"]["template"]["spec"]["containers"]
    limits = container["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1 and container["resources"]["requests"]["nvidia.com/gpu"] == 1
    # The base's probes and security settings survive the patch.
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    data = resources["ConfigMap"]["data"]
    assert data["RESNET_DEVICE"] == "cuda"
    # Each worker decodes on its share of the pod's cores.
    cores = int(limits["cpu"])
    assert int(data["RESNET_WORKERS"]) * int(data["RESNET_PREPROCESS_THREADS"]) == cores
    images = yaml.safe_load((GPU / "kustomization.yaml").read_text())["images"]
    assert images == [{"name": "resnet-service", "newTag": "gpu"}]
