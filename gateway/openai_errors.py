"""Errors in OpenAI's body shape, so code written against OpenAI's SDK raises the exception
it expects (``BadRequestError``, ``AuthenticationError``, …) with a readable message."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from shared.protocol import ErrorCode

#: The service's stable error codes as HTTP statuses and the form field they concern.
STATUS_BY_CODE: dict[str, tuple[int, str | None]] = {
    ErrorCode.EMPTY_AUDIO: (400, "file"),
    ErrorCode.INVALID_AUDIO: (415, "file"),
    ErrorCode.AUDIO_TOO_LARGE: (413, "file"),
    ErrorCode.AUDIO_TOO_LONG: (413, "file"),
    ErrorCode.UNKNOWN_MODEL: (400, "model"),
    ErrorCode.UNSUPPORTED_LANGUAGE: (400, "language"),
    ErrorCode.UNSUPPORTED_TASK: (400, "model"),
    ErrorCode.INVALID_FIELD: (400, None),
    ErrorCode.MISSING_FIELD: (400, None),
    ErrorCode.BUSY: (429, None),
    ErrorCode.TOO_MANY_CLIENTS: (429, None),
    ErrorCode.NO_WORKERS: (503, None),
    ErrorCode.MODEL_UNAVAILABLE: (503, "model"),
    ErrorCode.AUDIO_SERVICE_UNAVAILABLE: (503, None),
    ErrorCode.TIMEOUT: (504, None),
}


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    @classmethod
    def from_code(cls, code: str, message: str) -> OpenAIError:
        status, param = STATUS_BY_CODE.get(code, (500, None))
        return cls(status, message, param=param, code=str(code))

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
