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
SERVER_ERROR_MESSAGE = ("The server had an error while processing your request. Sorry about that! You can retry your "
                        "request, or contact us through our help center at help.openai.com if the error persists.")

# The error answer of each HTTP status that `--faults <status>` injects, as (type, code, message): the type and code
# the real service sends with that status where it is published (403 is its country block, 404 an unknown model);
# 408 is worded as this server's own body deadline says it, and 409/422/504 (the service publishes no body for them)
# in the same shape, with the type its status family uses. `{model}` is the request's model.
STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "We could not parse the JSON body of your request. (HINT: This likely means "
          "you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
          "not valid JSON.)"),
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided. You can find your API key in your account settings."),
    403: ("request_forbidden", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model `{model}` does not exist or you do not have access to it."),
    408: ("invalid_request_error", "request_timeout", "The request timed out before it was processed; please retry."),
    409: ("invalid_request_error", "conflict",
          "Another request is changing the same resource at this moment; please retry."),
    422: ("invalid_request_error", "unprocessable_entity",
          "The request was well-formed but could not be processed: its content is not acceptable."),
    500: ("server_error", None, SERVER_ERROR_MESSAGE),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
    504: ("server_error", None, "Gateway timeout: the upstream server did not answer in time; please retry."),
}


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
