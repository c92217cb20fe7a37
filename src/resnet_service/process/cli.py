"""``resnet-service serve|predict|export``: the command line, which builds Settings and hands them down.

Each command imports what it needs when it runs, so ``--help`` is instant and ``export`` alone needs TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

MODEL_HELP = "ONNX model file (default: RESNET_MODEL_PATH, else models/resnet50.onnx)"


def _serve(args: argparse.Namespace) -> int:
    from resnet_service.app import create_app
    from resnet_service.core.log import logging_config
    from resnet_service.core.settings import Settings
    from resnet_service.process.server import serve
    from resnet_service.process.workers import serve_workers

    overrides = {"model_path": args.model, "model_dir": args.model_dir, "workers": args.workers}
    settings = Settings(**{name: value for name, value in overrides.items() if value is not None})
    log_config = logging_config(settings.log_format, args.log_level)
    if settings.workers > 1 or settings.model_process:
        return serve_workers(settings, args.host, args.port, args.log_level, log_config)
    return serve(create_app(settings), settings, args.host, args.port, args.log_level, log_config)


def _predict(args: argparse.Namespace) -> int:
    from resnet_service.core.settings import Settings
    from resnet_service.process.local import classify_files

    settings = Settings(model_path=args.model) if args.model else Settings()
    if args.top_k is not None:
        settings = settings.model_copy(update={"top_k": args.top_k})
    return classify_files(args.files, settings, sys.stdout, sys.stderr)


def _export(args: argparse.Namespace) -> int:
    # export imports TensorFlow only inside its functions and names the missing extra itself.
    from resnet_service.export import convert

    return convert.main(args.export_args, prog="resnet-service export")


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1000, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-service", description="Image classifiers exported from Keras behind an HTTP API."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API with uvicorn", description="Serve the HTTP API.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    serve.add_argument("--model", type=Path, help=MODEL_HELP)
    serve.add_argument(
        "--model-dir",
        type=Path,
        help="a folder of models to serve together, by name, reloading changed files (default: RESNET_MODEL_DIR); "
        "replaces --model",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="processes serving the port, each a full replica with its own model copy (default: RESNET_WORKERS, "
        "else 1); ONNX Runtime's threads are divided among them",
    )
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(run=_serve)

    predict = commands.add_parser(
        "predict",
        help="classify local image files without a server",
        description="Classify local image files with the ONNX model in this process, no server needed. Prints "
        "one line of /predict's JSON per file, in the order given; a file that fails gets "
        '{"success": false, "error": ...} and the exit status is 1.',
        epilog="example: resnet-service predict dog.jpg cat.png --top-k 3",
    )
    predict.add_argument("files", nargs="+", type=Path, metavar="FILE", help="image files (JPEG, PNG, GIF, ...)")
    predict.add_argument("--model", type=Path, help=MODEL_HELP)
    predict.add_argument("--top-k", type=_positive, help="predictions per file (default: RESNET_TOP_K, else 5)")
    predict.set_defaults(run=_predict)

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
    arguments = list(sys.argv[1:] if argv is None else argv)
    # export's arguments are its own parser's, passed through whole: argparse's REMAINDER would refuse an option
    # such as --help or --weights that comes first.
    if arguments[:1] == ["export"]:
        return _export(argparse.Namespace(export_args=arguments[1:]))
    args = _parser().parse_args(arguments)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
