"""docker-compose.yml with deploy/compose.ci.yml, rendered for host networking and driven through Compose v2."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.docker_engine import DockerEngine

# Compose 1.29 refuses these with network_mode: host, and with host networking they mean nothing: only loopback
# ports exist, and every service shares them.
HOST_NETWORK_DROPPED_KEYS = ("ports", "expose", "networks")
# Where compose.ci.yml puts the API and nginx, all on 127.0.0.1.
API_PORT, API_GRPC_PORT, NGINX_PORT, NGINX_GRPC_PORT = 8000, 8001, 8080, 8081


def render(engine: DockerEngine, files: list[Path], env: dict[str, str], out: Path) -> Path:
    """``docker compose config`` of ``files``, less the keys host networking has no use for, written to ``out``."""
    arguments = [arg for file in files for arg in ("-f", str(file))]
    config = yaml.safe_load(engine.run("compose", *arguments, "config", timeout=60, env=env).stdout)
    for service in config["services"].values():
        for key in HOST_NETWORK_DROPPED_KEYS:
            service.pop(key, None)
        assert service["network_mode"] == "host", service
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def busy_ports(ports: tuple[int, ...]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


@dataclass
class ComposeStack:
    engine: DockerEngine
    file: Path
    project: str
    env: dict[str, str]
    log: Path

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker compose -f FILE -p PROJECT ARGS``; its output also goes to the run's log."""
        command = ["compose", "-f", str(self.file), "-p", self.project, *args]
        result = self.engine.run(*command, timeout=timeout, check=False, env=self.env)
        with self.log.open("a") as sink:
            sink.write(f"$ docker {' '.join(command)}  # exit {result.returncode}\n{result.stdout}{result.stderr}\n")
        if check and result.returncode != 0:
            failed = f"docker compose {' '.join(args)} exited {result.returncode}"
            raise AssertionError(f"{failed}:\n{result.stderr[-6000:]}")
        return result

    def container(self, service: str) -> str:
        ids = self.compose("ps", "--all", "--quiet", service, timeout=30).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        return json.loads(self.engine.run("inspect", self.container(service), timeout=30).stdout)[0]

    def health(self, service: str) -> str:
        return self.inspect(service)["State"].get("Health", {}).get("Status", "none")

    def wait_healthy(self, service: str, timeout: float) -> float:
        """Seconds until the container's own HEALTHCHECK reports healthy."""
        started = time.monotonic()
        while (status := self.health(service)) != "healthy":
            assert time.monotonic() - started < timeout, f"{service} still {status} after {timeout:.0f} s"
            time.sleep(0.5)
        return time.monotonic() - started

    def logs(self) -> str:
        result = self.compose("logs", "--no-color", "--timestamps", "--tail", "300", timeout=60, check=False)
        return result.stdout + result.stderr

    def leftover_containers(self) -> list[str]:
        labelled = f"label=com.docker.compose.project={self.project}"
        return self.engine.run("ps", "--all", "--quiet", "--filter", labelled, timeout=30).stdout.split()
