"""Errors in OpenAI's body shape, so code written against OpenAI's SDK raises the exception
it expects (``BadRequestError``, ``AuthenticationError``, …) with a readable message."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from shared.errors import parse_code, spec


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    @classmethod
    def from_code(cls, code: str, message: str) -> OpenAIError:
        """Status and ``param`` from the service's error table; a code this gateway does not
        know (a newer worker's) is reported as it came, with the status of an internal error."""
        entry = spec(parse_code(code))
        return cls(entry.status, message, param=entry.param, code=str(code))

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": error_type(self.status),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {"Retry-After": "5"} if self.status in (429, 503) else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def error_type(status: int) -> str:
    """OpenAI's ``type``: client mistakes are ``invalid_request_error``; ours ``server_error``."""
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Routing errors (404 unknown path, 405 wrong method) in OpenAI's shape under ``/v1``,
    so SDK users get a readable exception; Starlette's plain text everywhere else."""
    assert isinstance(exc, HTTPException)
    if request.url.path != "/v1" and not request.url.path.startswith("/v1/"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = f"{exc.detail}: {request.method} {request.url.path}"
    response = OpenAIError(exc.status_code, message, code=code).response()
    response.headers.update(exc.headers or {})
    return response
