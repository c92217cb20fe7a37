"""Which runtime RESNET_RUNTIME=auto picks on this machine's CPU, and the mark for tests that need OpenVINO."""

from __future__ import annotations

import pytest

from resnet_service.inference.openvino_model import openvino_installed

__all__ = ["AUTO_ON_CPU", "PROVIDERS", "requires_openvino"]

AUTO_ON_CPU = "openvino" if openvino_installed() else "onnxruntime"
PROVIDERS = {"onnxruntime": "CPUExecutionProvider", "openvino": "OpenVINO CPU"}

requires_openvino = pytest.mark.skipif(
    not openvino_installed(), reason="OpenVINO is not installed (pip install -e '.[openvino]')"
)
