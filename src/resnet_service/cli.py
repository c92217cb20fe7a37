"""``resnet-service serve|export``: the command line, which builds Settings and hands them down."""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from resnet_service.app import create_app
    from resnet_service.server import serve
    from resnet_service.settings import Settings

    settings = Settings(model_path=args.model) if args.model else Settings()
    return serve(create_app(settings), settings, args.host, args.port, args.log_level, _log_config())


def _log_config() -> dict[str, object]:
    # uvicorn configures only its own loggers; the service's (random-weights warning, model load) share its format.
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["resnet_service"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _export(args: argparse.Namespace) -> int:
    # export imports TensorFlow only inside its functions and names the missing extra itself.
    from resnet_service import export

    return export.main(args.export_args, prog="resnet-service export")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnet-service", description="ResNet-50 behind an HTTP API.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API with uvicorn", description="Serve the HTTP API.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    serve.add_argument(
        "--model", type=Path, help="ONNX model file (default: RESNET_MODEL_PATH or models/resnet50.onnx)"
    )
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(run=_serve)

    export = commands.add_parser(
        "export",
        help="export Keras ResNet50 to ONNX and verify it (needs the export extra)",
        description="Export Keras ResNet50 to ONNX; the arguments are scripts/export_onnx.py's (see export --help).",
        add_help=False,
    )
    export.add_argument("export_args", nargs=argparse.REMAINDER)
    export.set_defaults(run=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
