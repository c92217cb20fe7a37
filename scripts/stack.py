#!/usr/bin/env python3
"""`make stack`: the Compose topology without Docker. uvicorn behind nginx, in the foreground.

    scripts/stack.py [--run-dir .run/stack] [--api-port 8000] [--nginx-port 8080] [--model PATH]

It renders deploy/nginx.conf and deploy/nginx-native.conf into the run directory, which also gets the pid
files, nginx's temp files and both logs. Then it starts the API, waits until it is ready, and starts nginx.
Output is prefixed per service, as `docker compose up` does. SIGTERM or Ctrl-C stops both and exits 0.
If the API dies, nginx stays up and answers JSON 502s, as it would while Compose restarts the container;
if nginx dies, the stack stops and exits 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from resnet_service.process.probe import NotReady, wait_until_ready
from resnet_service.web.upload import MULTIPART_OVERHEAD_BYTES

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def say(message: str) -> None:
    sys.stdout.write(f"stack: {message}\n")
    sys.stdout.flush()


def render(template: str, values: dict[str, str]) -> str:
    """envsubst restricted to `values`: nginx's own $variables pass through untouched."""
    pattern = re.compile(r"\$\{(" + "|".join(map(re.escape, values)) + r")\}")
    return pattern.sub(lambda match: values[match.group(1)], template)


def client_max_body_size() -> str:
    upload_bytes = int(os.environ.get("RESNET_MAX_UPLOAD_BYTES", 10 * 1024 * 1024))
    return f"{-(-upload_bytes // 1024) + MULTIPART_OVERHEAD_BYTES // 1024}k"


def write_configs(run_dir: Path, api_port: int, nginx_port: int, grpc_port: int, nginx_grpc_port: int) -> Path:
    values = {
        "RESNET_UPSTREAM": f"127.0.0.1:{api_port}",
        "NGINX_PORT": f"127.0.0.1:{nginx_port}",
        "RESNET_GRPC_UPSTREAM": f"127.0.0.1:{grpc_port}",
        "NGINX_GRPC_PORT": f"127.0.0.1:{nginx_grpc_port}",
        "CLIENT_MAX_BODY_SIZE": client_max_body_size(),
        # The same defaults docker-compose.yml gives the nginx container.
        "NGINX_RATE_LIMIT": os.environ.get("NGINX_RATE_LIMIT", "100r/s"),
        "NGINX_RATE_BURST": os.environ.get("NGINX_RATE_BURST", "200"),
        "RUN_DIR": str(run_dir),
    }
    (run_dir / "default.conf").write_text(render((DEPLOY / "nginx.conf").read_text(), values))
    main_conf = run_dir / "nginx.conf"
    main_conf.write_text(render((DEPLOY / "nginx-native.conf").read_text(), values))
    return main_conf


def relay(name: str, stream: IO[bytes], log: Path) -> threading.Thread:
    """Copy a child's output to the terminal, prefixed, and to its log file under the run directory."""

    def copy() -> None:
        with log.open("ab") as sink:
            for line in iter(stream.readline, b""):
                sink.write(line)
                sink.flush()
                sys.stdout.buffer.write(f"{name:<5} | ".encode() + line)
                sys.stdout.flush()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def start(name: str, command: list[str], run_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C in the terminal reaches only this script, which stops the children in order.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    (run_dir / f"{name}.pid").write_text(f"{process.pid}\n")
    assert process.stdout is not None
    relay(name, process.stdout, run_dir / f"{name}.log")
    return process


def wait_ready(url: str, api: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        wait_until_ready(url, api, timeout)
    except NotReady as exc:
        raise SystemExit(f"stack: the API was not ready ({exc}); see its log above") from exc


def stop(process: subprocess.Popen[bytes], sig: signal.Signals, grace: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description="uvicorn behind nginx, natively, as docker-compose.yml runs them")
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("STACK_RUN_DIR", ROOT / ".run/stack")))
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--nginx-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8001, help="the API's gRPC port (RESNET_GRPC_PORT)")
    parser.add_argument("--nginx-grpc-port", type=int, default=8081, help="nginx's gRPC port")
    parser.add_argument("--model", type=Path, help="default: RESNET_MODEL_PATH or models/resnet50.onnx")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = parser.parse_args()

    if not Path(args.nginx).exists():
        raise SystemExit("stack: nginx is not installed; on Debian or Ubuntu: apt-get install -y nginx-light")
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)  # nginx workers run as an unprivileged user when started by root and write temp files here
    main_conf = write_configs(run_dir, args.api_port, args.nginx_port, args.grpc_port, args.nginx_grpc_port)
    nginx = [args.nginx, "-e", "stderr", "-p", str(run_dir), "-c", str(main_conf)]
    subprocess.run([*nginx, "-t", "-q"], check=True)

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())

    serve = [
        sys.executable,
        "-m",
        "resnet_service.process.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.api_port),
    ]
    model = ["--model", str(args.model)] if args.model else []
    api = start("api", [*serve, *model], run_dir, env={"RESNET_GRPC_PORT": str(args.grpc_port)})
    wait_ready(f"http://127.0.0.1:{args.api_port}/health/ready", api, timeout=120)
    proxy = start("nginx", nginx, run_dir)
    say(f"http://127.0.0.1:{args.nginx_port} → nginx → uvicorn :{args.api_port}; run dir {run_dir}")
    say(f"gRPC 127.0.0.1:{args.nginx_grpc_port} → nginx → the API's gRPC :{args.grpc_port}")

    api_reported = False
    status = 0
    while not stopping.wait(0.2):
        if proxy.poll() is not None:
            say(f"nginx exited with {proxy.returncode}; stopping")
            status = 1
            break
        if api.poll() is not None and not api_reported:
            say(f"the API exited with {api.returncode}; nginx answers 502 until the stack restarts")
            api_reported = True
    # nginx first, with SIGQUIT: it finishes the requests it holds, then the API drains and exits.
    stop(proxy, signal.SIGQUIT)
    stop(api, signal.SIGTERM)
    say("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
