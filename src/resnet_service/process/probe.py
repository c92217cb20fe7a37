"""Waiting, from outside, for a server to turn ready: `make stack`, the benchmarks and the tests start servers so."""

from __future__ import annotations

import subprocess
import time

import httpx

__all__ = ["NotReady", "wait_until_ready"]


class NotReady(RuntimeError):
    """Raised when the server's process exits, or the time runs out, before the URL answers 200."""


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0, interval: float = 0.1
) -> float:
    """Poll ``url`` (a readiness route) until it answers 200; the seconds that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise NotReady(f"the server exited with {process.returncode} before {url} answered 200")
        try:
            # trust_env=False: a proxy from the environment must not stand between us and a local server.
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(interval)
    raise NotReady(f"{url} did not answer 200 within {timeout:g} s")
