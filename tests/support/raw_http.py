"""Raw HTTP/1.1 over a socket, for uploads no HTTP client would send, and reading their whole answer."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: dict[str, object]


def headers_only_upload(base_url: str, content_length: int) -> RawResponse:
    """POST /predict announcing `content_length` bytes, send none of them, and read the JSON answer."""
    host, port = base_url.removeprefix("http://").split(":")
    head = (
        "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.encode())
        return read_response(connection)


def read_response(connection: socket.socket) -> RawResponse:
    """One whole JSON response, however many reads its headers and body arrive in."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += _recv(connection)
    head_part, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        body += _recv(connection)
    return RawResponse(int(status_line.split()[1]), headers, json.loads(body))


def _recv(connection: socket.socket) -> bytes:
    chunk = connection.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection before its answer was complete")
    return chunk
