"""The exit statuses the command line documents, each defined once."""

from __future__ import annotations

__all__ = ["MODEL_PROCESS_LOST", "STARTUP_FAILURE", "WEIGHTS_UNAVAILABLE"]

# serve, a worker, or predict could not load a model; also uvicorn's own status when an app fails to start.
STARTUP_FAILURE = 3
# export: the weights asked for cannot be had here (no network for imagenet, no such file).
WEIGHTS_UNAVAILABLE = 3
# serve with RESNET_MODEL_PROCESS: the model process died, so the workers were stopped.
MODEL_PROCESS_LOST = 4
