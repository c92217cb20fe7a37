"""A Docker engine for the Compose check: the one on DOCKER_HOST when it answers, else a dockerd of our own.

Our own dockerd keeps its data under the run directory (so base images and the build cache survive between runs),
creates no bridge and touches no iptables: every container uses the host's network, on loopback. It is stopped by
its PID at the end, and what it left on the host's network interfaces is checked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Interface names dockerd makes for bridge networking; with --bridge=none none may appear.
BRIDGE_INTERFACE_PREFIXES = ("docker", "br-", "veth")


@dataclass
class DockerEngine:
    host: str
    config_dir: str | None
    own: bool
    pid: int | None = None
    log: Path | None = None
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "DOCKER_HOST": self.host}
        if self.config_dir:
            self.env["DOCKER_CONFIG"] = self.config_dir

    def run(
        self, *args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` with ``env`` added to the engine's, its output captured; a failure shows what it printed."""
        environment = {**self.env, **(env or {})}
        result = subprocess.run(["docker", *args], env=environment, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def answers(self) -> bool:
        return self.run("version", "--format", "{{.Server.Version}}", timeout=10, check=False).returncode == 0


def network_interfaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def bridge_interfaces(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith(BRIDGE_INTERFACE_PREFIXES)}


def _start_dockerd(data_root: Path, timeout: float) -> tuple[DockerEngine, subprocess.Popen[bytes], Path]:
    if shutil.which("dockerd") is None:
        raise AssertionError("the Compose check needs a Docker engine: apt-get install docker.io, or set DOCKER_HOST")
    if os.geteuid() != 0:
        raise AssertionError("starting dockerd needs root; or point DOCKER_HOST at a running engine")
    # A unix socket path must stay under 108 bytes, so the socket and exec root live in a short temporary path.
    short = Path(tempfile.mkdtemp(prefix="dk-", dir="/tmp"))
    data_root.mkdir(parents=True, exist_ok=True)
    log = data_root.parent / "dockerd.log"
    command = [
        "dockerd",
        "--data-root", str(data_root),
        "--exec-root", str(short / "exec"),
        "-H", f"unix://{short / 'docker.sock'}",
        "--pidfile", str(short / "dockerd.pid"),
        "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    engine = DockerEngine(f"unix://{short / 'docker.sock'}", os.environ.get("DOCKER_CONFIG"), True, process.pid, log)
    deadline = time.monotonic() + timeout
    while not engine.answers():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"dockerd did not start; its log ({log}):\n{log.read_text()[-4000:]}")
        time.sleep(0.25)
    return engine, process, short


def _stop_dockerd(process: subprocess.Popen[bytes], short: Path) -> None:
    pidfile = short / "dockerd.pid"
    pid = int(pidfile.read_text()) if pidfile.exists() else process.pid
    os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("dockerd did not stop within 60 s of SIGTERM") from None
    finally:
        shutil.rmtree(short, ignore_errors=True)


@contextmanager
def docker_engine(data_root: Path, timeout: float = 60) -> Iterator[DockerEngine]:
    """The engine on DOCKER_HOST when one answers there; otherwise our own dockerd, stopped by its PID at the end."""
    if os.environ.get("DOCKER_HOST"):
        engine = DockerEngine(os.environ["DOCKER_HOST"], os.environ.get("DOCKER_CONFIG"), own=False)
        if not engine.answers():
            raise AssertionError(f"DOCKER_HOST={engine.host} does not answer: unset it to start a dockerd here")
        yield engine
        return
    engine, process, short = _start_dockerd(data_root, timeout)
    try:
        yield engine
    finally:
        _stop_dockerd(process, short)
