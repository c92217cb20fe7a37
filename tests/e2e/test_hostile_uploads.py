"""Hostile uploads against a real uvicorn process: a bomb allocates nothing, an endless body is cut off early."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

import httpx

from tests.conftest import LiveServer
from tests.support.hostile import png_bomb
from tests.support.process import memory_mb
from tests.support.raw_http import read_response


def test_a_decodable_30000_by_30000_png_is_refused_before_any_pixel_buffer_exists(
    live_server: LiveServer, report_figure: Callable[[str], None]
) -> None:
    bomb = png_bomb(30_000)
    assert len(bomb) < 1_000_000  # decoded, it would be 900 MB of pixels
    pid = live_server.process.pid
    peak_before = memory_mb(pid, "VmHWM")
    response = httpx.post(f"{live_server.url}/predict", files={"image": ("bomb.png", bomb)}, trust_env=False)
    assert response.status_code == 413 and response.json()["error"]["code"] == "image_too_large"
    peak_after = memory_mb(pid, "VmHWM")
    assert peak_after - peak_before < 50
    report_figure(f"a {len(bomb)}-byte bomb: peak RSS {peak_before:.0f} MB before, {peak_after:.0f} MB after")


def test_an_endless_chunked_upload_is_refused_while_it_streams(
    live_server: LiveServer, report_figure: Callable[[str], None]
) -> None:
    # No Content-Length: the server can only count the body as it arrives.
    host, port = live_server.url.removeprefix("http://").split(":")
    head = (
        "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    part = b'--b0undary\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
    chunk = b"\xff" * 65536
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.encode() + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        while sent < 200 * 1024 * 1024:
            if select.select([connection], [], [], 0)[0]:
                break
            try:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        # The headers and the JSON body may come in separate reads.
        answer = read_response(connection)
    assert answer.status == 413 and answer.body["error"]["code"] == "payload_too_large", answer
    # The limit is 10 MiB; socket buffers hold a few more in flight when the answer arrives.
    assert sent < 40 * 1024 * 1024, sent
    report_figure(f"the answer came after {sent / 2**20:.1f} MiB of an endless body (limit 10 MiB)")
    assert httpx.get(f"{live_server.url}/health/ready", trust_env=False).status_code == 200
