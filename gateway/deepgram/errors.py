"""Deepgram's error shapes, drawn from this service's error codes (:mod:`shared.errors`).

Deepgram answers a refused REST request (and a refused WebSocket handshake) with an HTTP
status and ``{"err_code", "err_msg", "request_id"}``; a live stream that goes wrong gets a
``{"type": "Error", "variant", "description"}`` frame (the SDK's ``ListenV1Error``), and
when the stream cannot go on, a close frame. ``err_code`` and ``variant`` carry our
stable code upper-cased (``INVALID_AUDIO``), so a program can switch on it as on ours.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import JSONResponse

from shared import errors
from shared.errors import ErrorCode

#: Deepgram closes a stream whose payload is not audio with 1008 (``DATA-0000``) and one
#: it cannot serve with 1011 (``NET-0000``); 1013 (try again later) is the refusal of a
#: full server, as on every WebSocket of this service.
CLOSE_BAD_DATA = 1008
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class DeepgramError(Exception):
    """A request refused in Deepgram's shape: ``status`` for HTTP, ``code`` ours."""

    def __init__(self, code: ErrorCode | str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.status = status if status is not None else http_status(self.code)

    def body(self, request_id: str) -> dict[str, Any]:
        return {"err_code": self.code.upper(), "err_msg": self.message, "request_id": request_id}

    def response(self, request_id: str | None = None) -> JSONResponse:
        request_id = request_id or str(uuid.uuid4())
        headers = {"dg-request-id": request_id, "dg-error": self.message[:200]}
        if self.status in (429, 503):
            headers["Retry-After"] = "5"
        return JSONResponse(self.body(request_id), status_code=self.status, headers=headers)


def http_status(code: str) -> int:
    try:
        return errors.http_status(ErrorCode(code))
    except ValueError:  # not one of ours: a client mistake
        return 400


def error_frame(code: str, description: str, **fields: Any) -> dict[str, Any]:
    """A live stream's ``Error`` message (``message``, in Deepgram's, is the client's
    frame that could not be read)."""
    return {"type": "Error", "variant": code.upper(), "description": description, "code": code, **fields}


def close_code_for(code: str) -> int:
    """The close code when the error ends a live stream."""
    if code in (ErrorCode.BUSY, ErrorCode.TOO_MANY_CLIENTS, ErrorCode.NO_WORKERS):
        return CLOSE_TRY_AGAIN_LATER
    if http_status(code) < 500:
        return CLOSE_BAD_DATA
    return CLOSE_SERVER_ERROR
