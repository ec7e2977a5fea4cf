"""The one error shape `audiosum serve` answers with: OpenAI's {"error": {"message", "type", "param", "code"}}.

Builds error answers and nothing else; it never decides whether a request is refused. Bodies are ASCII JSON, so no
string a client sent (a lone surrogate, say) can make the answer itself fail to encode.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.responses import Response

MAX_QUOTED = 200  # at most this many characters of a client's value are quoted back in a message
CLOSE = {"connection": "close"}


class ApiFailure(Exception):
    """An answer in the OpenAI error shape; `kind` is the /stats counter it goes to (default `error_<status>`)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 error_type: str = "invalid_request_error", headers: dict[str, str] | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.error_type = status, message, param, code, error_type
        self.headers = headers or {}
        self.kind = kind or f"error_{status}"

    def response(self) -> Response:
        return error_response(self.status, self.message, param=self.param, code=self.code, error_type=self.error_type,
                              headers=self.headers)


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   error_type: str = "invalid_request_error", headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return json_response(body, status, {"x-request-id": request_id(), **(headers or {})})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON with non-ASCII escaped: always encodable, whatever strings a client managed to put in it."""
    data = json.dumps(body, separators=(",", ":")).encode("ascii")
    return Response(data, status_code=status, media_type="application/json", headers=headers)


def request_id() -> str:
    return "req_" + secrets.token_hex(16)


def quoted(value: Any) -> str:
    """A client's value for an error message: repr'd, and cut to MAX_QUOTED characters."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 1] + "…"


def raw_error(status: int, reason: str, message: str, code: str | None,
              error_type: str = "invalid_request_error") -> bytes:
    """A whole HTTP/1.1 error answer as bytes, for the protocol layer, which must answer before any ASGI request
    exists (headers that never arrived, too many connections). It always closes the connection."""
    body = json.dumps({"error": {"message": message, "type": error_type, "param": None, "code": code}}).encode("ascii")
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"x-request-id: {request_id()}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body
