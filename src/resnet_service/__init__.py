"""resnet-service: image classifiers exported from Keras, behind an async HTTP API on ONNX Runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resnet_service.core.version import __version__

__all__ = ["create_app", "Settings", "__version__"]

if TYPE_CHECKING:
    from resnet_service.app import create_app
    from resnet_service.core.settings import Settings


def __getattr__(name: str) -> Any:
    # Imported on first use: `resnet-service --help` then loads neither onnxruntime, FastAPI, numpy nor Pillow.
    if name == "create_app":
        from resnet_service.app import create_app

        return create_app
    if name == "Settings":
        from resnet_service.core.settings import Settings

        return Settings
    raise AttributeError(f"module 'resnet_service' has no attribute {name!r}")
