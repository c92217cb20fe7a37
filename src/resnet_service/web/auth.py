"""Bearer API keys for the inference routes; off unless RESNET_API_KEYS is set. Probes stay open."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from resnet_service.core.errors import Unauthorized

__all__ = ["api_key_guard", "check_key", "UNAUTHORIZED_RESPONSE"]

_bearer = HTTPBearer(auto_error=False, description="One of the keys in RESNET_API_KEYS.")

UNAUTHORIZED_RESPONSE: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "RESNET_API_KEYS is set and the request has no valid `Authorization: Bearer <key>`.",
        "content": {
            "application/json": {
                "example": {
                    "success": False,
                    "error": {"code": "unauthorized", "message": "send Authorization: Bearer <key>"},
                }
            }
        },
    }
}


def check_key(keys: frozenset[str], given: str | None) -> None:
    """Admit ``given`` (the bearer token, None when there is none) only if it is one of ``keys``."""
    if given is None:
        raise Unauthorized("send Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"})
    matched = False
    for key in keys:
        # Every key is compared, each in constant time, so the timing tells neither the key nor which one.
        matched |= hmac.compare_digest(given.encode(), key.encode())
    if not matched:
        raise Unauthorized("the API key is not valid", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def api_key_guard(keys: frozenset[str]) -> Callable[..., Awaitable[None]]:
    """A dependency that admits a request only with one of ``keys`` as its bearer token."""

    async def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        check_key(keys, credentials.credentials if credentials is not None else None)

    return check
