"""``GET /models``: the served models, each with its classes and the input it takes (for the demo page, clients)."""

from __future__ import annotations

from fastapi import APIRouter

from resnet_service.inference.model_repository import ServedModel
from resnet_service.web.deps import ModelsDep
from resnet_service.web.schemas import InputContract, ModelSummary

__all__ = ["router", "summary"]

router = APIRouter(tags=["models"])


def summary(served: ServedModel, default: bool) -> ModelSummary:
    contract = served.engine.contract
    return ModelSummary(
        name=served.name,
        default=default,
        version=served.version,
        architecture=contract.architecture,
        random_weights=served.engine.random_weights,
        classes=len(contract.labels.names),
        labels=list(contract.labels.names),
        input=InputContract(**contract.input.describe()),
    )


@router.get(
    "/models",
    response_model=list[ModelSummary],
    summary="The models this server serves, the default first, with their classes and input",
)
async def list_models(models: ModelsDep) -> list[ModelSummary]:
    return [summary(served, served.name == models.default_name) for served in models.in_order()]
