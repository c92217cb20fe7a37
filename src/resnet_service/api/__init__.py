"""The HTTP layer: the FastAPI app, its dependencies, body parsing, errors, middleware and routes."""
