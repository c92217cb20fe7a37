"""The API's error shape, asserted the same way everywhere."""

from __future__ import annotations

import httpx


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
