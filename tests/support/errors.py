"""The API's error shape, asserted the same way everywhere."""

from __future__ import annotations

import httpx

from tests.support.raw_http import RawResponse


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    request_id = response.headers["x-request-id"]
    assert body == {
        "success": False,
        "error": {"code": code, "message": body["error"]["message"], "request_id": request_id},
    }
    assert body["error"]["message"] and "Traceback" not in response.text


def assert_nginx_error(response: RawResponse, status: int, code: str) -> None:
    """nginx's own JSON error, answered without the API, read off a raw socket."""
    assert response.status == status, response
    assert response.headers["content-type"] == "application/json" and response.headers["server"] == "nginx"
    assert response.body == {
        "success": False,
        "error": {
            "code": code,
            "message": response.body["error"]["message"],
            "request_id": response.headers["x-request-id"],
        },
    }
