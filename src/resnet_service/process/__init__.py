"""The processes: the command line, uvicorn with drain, worker processes, and `predict` without a server."""
