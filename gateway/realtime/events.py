"""Server events of OpenAI's Realtime API, shaped as the ``openai`` package's types in
``openai/types/realtime/`` (its client parses every event it receives into them)."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.openai_errors import error_type
from shared.errors import ErrorCode, parse_code, spec


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": new_id("event"), **fields}


def error(
    code: str,
    message: str,
    *,
    param: str | None = None,
    event_id: str | None = None,
    status: int | None = None,
    retry_after_s: float | None = None,
) -> dict[str, Any]:
    """``RealtimeErrorEvent``: ``error.type`` as on the HTTP API (client mistakes are
    ``invalid_request_error``, ours ``server_error``, from the code's HTTP status);
    ``error.event_id`` names the client event that caused it. OpenAI's own codes that are
    not the service's (``invalid_value``, ``invalid_type``) are bad fields: client mistakes.

    Whether the session is still usable is said as OpenAI says it: not by a field (its
    type has none: "most errors are recoverable and the session will stay open") but by
    the socket. After an ``error`` the socket stays open and the session is as before the
    refused event (settings, buffer, items; a failed stream is opened again by the next
    append); the one error after which it is not, flooding (``rate_limited``, "the
    connection is closed"), is followed by a close frame (1008). Every one is logged as
    ``realtime_error`` with its code and both event ids (:mod:`gateway.realtime.session`)."""
    default_status = spec(parse_code(code, ErrorCode.INVALID_FIELD)).status
    body: dict[str, Any] = {
        "type": error_type(status or default_status),
        "code": str(code),
        "message": message,
        "param": param,
        "event_id": event_id,
    }
    if retry_after_s is not None:  # ``busy``: our extension, kept by OpenAI's SDK as an extra field
        body["retry_after_s"] = retry_after_s
    return event("error", error=body)


def user_item(item_id: str, transcript: str | None, status: str) -> dict[str, Any]:
    """``RealtimeConversationItemUserMessage`` holding the utterance's audio (not echoed)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": status,
        "content": [{"type": "input_audio", "transcript": transcript}],
    }
