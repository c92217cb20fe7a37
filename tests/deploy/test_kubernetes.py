"""deploy/k8s: the kustomize base and its overlays, rendered by the real kustomize and validated strictly against
the Kubernetes schemas that kubernetes-validate ships and KEDA's own API schema (both offline)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml
from fastapi.testclient import TestClient

from tests.conftest import ROOT
from tests.deploy.conftest import render
from tests.support.keda_schema import KUBERNETES_VERSION, assert_valid, keda_problems

BASE = ROOT / "deploy/k8s/base"
OVERLAYS = ["base", "gpu", "keda", "prometheus-adapter"]
# Each pod's load, as the two autoscaling overlays read it.
LOAD_SERIES = {"resnet_queue_depth", "resnet_requests_in_flight"}


def _by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [document["kind"] for document in documents]
    assert len(kinds) == len(set(kinds)), kinds
    return {document["kind"]: document for document in documents}


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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_each_object_validates_strictly(node_modules: Path, overlay: str) -> None:
    assert_valid(render(node_modules, overlay), node_modules)


def test_strict_validation_rejects_a_broken_scaled_object(node_modules: Path) -> None:
    scaled = _by_kind(render(node_modules, "keda"))["ScaledObject"]
    scaled["spec"]["minReplicaCounts"] = scaled["spec"].pop("minReplicaCount")  # a typo the API server would drop
    scaled["spec"]["maxReplicaCount"] = "ten"
    scaled["spec"]["triggers"][0]["metadatas"] = scaled["spec"]["triggers"][0].pop("metadata")
    problems = "\n".join(keda_problems([scaled], node_modules))
    # The wrong type and the missing field from KEDA's schema, the two unknown fields from its declarations.
    assert "data/spec/maxReplicaCount must be integer" in problems
    assert "data/spec/triggers/0 must have required property metadata" in problems
    assert "spec/minReplicaCounts: not a field of ScaledObjectSpec" in problems
    assert "spec/triggers/0/metadatas: not a field of ScaleTriggers" in problems


def test_the_gpu_overlay_asks_for_one_gpu_and_keeps_the_base(node_modules: Path) -> None:
    resources = _by_kind(render(node_modules, "gpu"))
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
    assert container["image"] == "resnet-service:gpu"


def _load_series(query: str) -> set[str]:
    """The service's series a PromQL query reads; it must parse."""
    promql_parser.parse(query)
    return set(re.findall(r"\bresnet_[a-z_]+\b", query))


def test_keda_scales_on_the_queue_and_requests_in_flight_in_place_of_the_cpu_hpa(node_modules: Path) -> None:
    resources = _by_kind(render(node_modules, "keda"))
    base_hpa = _resources()["HorizontalPodAutoscaler"]["spec"]
    # KEDA makes the HorizontalPodAutoscaler itself: the base's must be gone, or the two would fight.
    assert "HorizontalPodAutoscaler" not in resources
    scaled = resources["ScaledObject"]
    spec = scaled["spec"]
    deployment = resources["Deployment"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (base_hpa["minReplicas"], base_hpa["maxReplicas"])
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == base_hpa["behavior"]
    read = set()
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        query = trigger["metadata"]["query"]
        read |= _load_series(query)
        # Only this deployment's pods: the namespace the overlay puts everything in.
        assert f'namespace="{scaled["metadata"]["namespace"]}"' in query
        assert float(trigger["metadata"]["threshold"]) > 0
    assert read == LOAD_SERIES


def test_the_prometheus_adapter_hpa_reads_the_metrics_its_rules_make(node_modules: Path) -> None:
    overlay = ROOT / "deploy/k8s/prometheus-adapter"
    hpa = _by_kind(render(node_modules, "prometheus-adapter"))["HorizontalPodAutoscaler"]["spec"]
    wanted = {metric["pods"]["metric"]["name"] for metric in hpa["metrics"]}
    assert all(metric["type"] == "Pods" for metric in hpa["metrics"]) and wanted == LOAD_SERIES
    values = yaml.safe_load((overlay / "adapter-values.yaml").read_text())
    assert values["rules"]["default"] is False
    made = set()
    for rule in values["rules"]["custom"]:
        assert _load_series(rule["seriesQuery"]) == {rule["name"]["as"]}
        # The adapter fills these in per request: the pods' label matchers and the grouping by pod.
        query = rule["metricsQuery"]
        for template, example in {
            "<<.Series>>": rule["name"]["as"],
            "<<.LabelMatchers>>": 'namespace="resnet",pod=~"resnet-service-.*"',
            "<<.GroupBy>>": "pod",
        }.items():
            assert template in query
            query = query.replace(template, example)
        _load_series(query)
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        made.add(rule["name"]["as"])
    assert made == wanted


def test_the_series_the_autoscalers_read_are_exported(client: TestClient) -> None:
    exported = set(re.findall(r"^(resnet_[a-z_]+)", client.get("/metrics").text, flags=re.M))
    assert LOAD_SERIES <= exported


def test_every_kubectl_apply_the_docs_and_manifests_name_renders(node_modules: Path) -> None:
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "deploy/k8s").glob("*/kustomization.yaml")]
    named = {name for path in texts for name in re.findall(r"kubectl apply -k deploy/k8s/([\w-]+)", path.read_text())}
    assert named == set(OVERLAYS)
    for overlay in named:
        assert render(node_modules, overlay)
