"""``uvicorn resnet_service.main:app``: the app built from the ``RESNET_*`` environment."""

from resnet_service.app import create_app

app = create_app()
