"""The two ways Amplitude's APIs authenticate (docs/amplitude-api.md §1.3 and §7)."""

from __future__ import annotations

import base64
import binascii
import hmac
from http import HTTPStatus
from typing import TYPE_CHECKING

from amplitude_simulator.protocol import SimResponse

if TYPE_CHECKING:
    from amplitude_simulator.data.dataset import Project


def check_basic(header: str | None, project: Project) -> SimResponse | None:
    """Basic ``api_key:secret_key``: 401 if missing or malformed, 403 if wrong (§1.3)."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return _unauthorized("Missing or malformed Authorization header")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return _unauthorized("Missing or malformed Authorization header")
    api_key, colon, secret = decoded.partition(":")
    if not colon:
        return _unauthorized("Missing or malformed Authorization header")
    key_ok = hmac.compare_digest(api_key.encode(), project.api_key.encode())
    secret_ok = hmac.compare_digest(secret.encode(), project.secret_key.encode())
    if not (key_ok and secret_ok):
        return SimResponse.text(HTTPStatus.FORBIDDEN, "Invalid API Key")
    return None


def check_api_key(header: str | None, project: Project) -> SimResponse | None:
    """Profile API ``Api-Key <secret_key>``; both failures are 401 (docs/amplitude-api.md §7)."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "api-key" or not token.strip():
        return SimResponse.text(HTTPStatus.UNAUTHORIZED, "Missing Api-Key in Authorization header")
    if not hmac.compare_digest(token.strip().encode(), project.secret_key.encode()):
        return SimResponse.text(HTTPStatus.UNAUTHORIZED, "Invalid Api-Key")
    return None


def _unauthorized(message: str) -> SimResponse:
    return SimResponse.text(
        HTTPStatus.UNAUTHORIZED, message, {"WWW-Authenticate": 'Basic realm="Amplitude"'}
    )
