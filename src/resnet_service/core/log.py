"""Log lines on stdout, as JSON objects (``RESNET_LOG_FORMAT=json``) or text, for uvicorn's loggers and ours.

A record may carry ``extra={"fields": {...}}``; the JSON formatter puts those keys at the top level of the line
and the text formatter appends them as ``key=value``, so one request's access line reads the same either way.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["ACCESS_LOGGER", "JsonFormatter", "TextFormatter", "logging_config"]

ACCESS_LOGGER = "resnet_service.access"

LogFormat = Literal["json", "text"]


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's fields, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # default=str: a field that is not JSON (a Path, an exception) is logged as text, never lost.
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        first, newline, rest = text.partition("\n")
        pairs = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        return f"{first} {pairs}{newline}{rest}"


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config``: every logger to stdout in one format."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    handler = {"class": "logging.StreamHandler", "formatter": "service", "stream": "ext://sys.stdout"}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"stdout": handler},
        "loggers": {
            # uvicorn's own access log is off: the service's access line replaces it, with timings and request id.
            "uvicorn": {"handlers": ["stdout"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "resnet_service": {"handlers": ["stdout"], "level": level, "propagate": False},
        },
    }
