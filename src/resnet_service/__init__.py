"""resnet-service: ResNet-50 behind an async HTTP API on ONNX Runtime."""

__version__ = "0.1.0"

from resnet_service.app import create_app  # noqa: E402 - app imports __version__ from here
from resnet_service.settings import Settings  # noqa: E402

__all__ = ["create_app", "Settings", "__version__"]
