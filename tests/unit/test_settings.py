from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from resnet_service.core import settings as settings_module
from resnet_service.core.settings import Settings, available_cpus
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def _no_developer_settings(clean_env: None) -> None:
    """Every test here starts from the defaults (tests.conftest.clean_env)."""


def test_defaults_match_the_documented_ones() -> None:
    settings = Settings()
    assert settings.model_path == Path("models/resnet50.onnx")
    assert settings.device == "auto"
    assert settings.top_k == 5
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    assert settings.max_image_pixels == 89_478_485
    assert settings.intra_op_threads == available_cpus()
    assert settings.max_queue == 16
    assert settings.queue_wait_s == 1.0
    assert settings.workers == 1
    assert settings.request_timeout_s == 30.0
    assert settings.shutdown_grace_s == 25.0
    assert settings.api_keys == frozenset()


def _variable(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"RESNET_{name.upper()}"


def test_the_configuration_page_documents_every_setting_and_only_those() -> None:
    page = (ROOT / "docs/configuration.md").read_text()
    table = set(re.findall(r"^\| `(RESNET_[A-Z_]+)` \|", page, flags=re.MULTILINE))
    read = {_variable(name) for name in Settings.model_fields}
    assert table == {variable for variable in read if variable.startswith("RESNET_")}
    # The variable the service sets for itself, and OpenTelemetry's own switch, are named below the table.
    assert read - table == {"PROMETHEUS_MULTIPROC_DIR", "OTEL_SDK_DISABLED"}
    assert "`PROMETHEUS_MULTIPROC_DIR`" in page and "`OTEL_SDK_DISABLED=true`" in page


def test_api_keys_are_comma_separated_blank_entries_ignored_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_API_KEYS", " alpha-key ,beta-key,, ")
    settings = Settings()
    assert settings.api_keys == frozenset({"alpha-key", "beta-key"})
    assert "alpha-key" not in repr(settings)
    monkeypatch.setenv("RESNET_API_KEYS", " , ")
    assert Settings().api_keys == frozenset()


def test_environment_uses_the_resnet_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_TOP_K", "3")
    monkeypatch.setenv("RESNET_DEVICE", "cpu")
    monkeypatch.setenv("RESNET_INTRA_OP_THREADS", "1")
    monkeypatch.setenv("TOP_K", "9")
    settings = Settings()
    assert (settings.top_k, settings.device, settings.intra_op_threads) == (3, "cpu", 1)


def test_unknown_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device"):
        Settings()


def test_available_cpus_is_bounded_by_the_affinity_mask() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"), [("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", None)]
)
def test_cgroup_v2_quota_caps_the_cpu_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str, expected: int | None
) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    monkeypatch.setattr(settings_module, "_CGROUP_V2_CPU_MAX", path)
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus() == (min(affinity, expected) if expected else affinity)


def test_batch_sizes_are_a_mode_or_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().batch_sizes == "auto"
    for mode in ("every", "powers-of-two"):
        monkeypatch.setenv("RESNET_BATCH_SIZES", mode)
        assert Settings().batch_sizes == mode
    monkeypatch.setenv("RESNET_BATCH_SIZES", "1, 4,16")
    settings = Settings()
    assert settings.batch_sizes == (1, 4, 16)
    assert settings.environment()["RESNET_BATCH_SIZES"] == "1,4,16"


@pytest.mark.parametrize("value", ["0,4", "1,two", "fast", ","])
def test_batch_sizes_that_are_not_sizes_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RESNET_BATCH_SIZES", value)
    with pytest.raises(ValueError, match="batch sizes|auto, every, powers-of-two"):
        Settings()


def test_gpu_defaults_are_the_measured_best() -> None:
    settings = Settings()
    assert settings.cuda_conv_algo_search == "HEURISTIC"
    assert settings.cuda_graphs is True and settings.cuda_prefer_nhwc is True
