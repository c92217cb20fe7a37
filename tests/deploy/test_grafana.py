"""The Grafana dashboard in deploy/ charts series the service really exports, in PromQL that parses."""

from __future__ import annotations

import json
import re

import promql_parser
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.support.images import encode, photo

DASHBOARD = json.loads((ROOT / "deploy/grafana/resnet-service.json").read_text())
SERIES = re.compile(r"\b(?:resnet|process)_[a-z_]+\b")


def _expressions() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]


def test_every_expression_parses_as_promql() -> None:
    for expression in _expressions():
        # Grafana fills in $__rate_interval before Prometheus sees the query.
        promql_parser.parse(expression.replace("$__rate_interval", "1m"))


def test_every_series_the_dashboard_queries_is_exported(client: TestClient) -> None:
    assert client.post("/predict", files={"image": ("c.jpg", encode(photo("chelsea"), "JPEG"))}).status_code == 200
    exported = {
        sample.name
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }
    queried = {name for expression in _expressions() for name in SERIES.findall(expression)}
    assert queried - exported == set()
    # Each stage the issue names is charted: requests, latency, queue, preprocessing, inference, batches, gauges.
    for name in (
        "resnet_requests_total",
        "resnet_request_duration_seconds_bucket",
        "resnet_queue_wait_seconds_bucket",
        "resnet_preprocess_seconds_bucket",
        "resnet_inference_seconds_bucket",
        "resnet_batch_size_bucket",
        "resnet_queue_depth",
        "resnet_requests_in_flight",
        "resnet_model_info",
    ):
        assert name in queried, name


def test_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert [variable["name"] for variable in DASHBOARD["templating"]["list"]] == ["datasource"]
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["gridPos"]["w"] > 0
