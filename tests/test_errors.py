"""The one error table (shared/errors.py): complete, consistent, and what the faces make of it."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from gateway.openai_errors import OpenAIError
from gateway.realtime import events as realtime_events
from shared import protocol
from shared.errors import CloseCode, ErrorCode, close_code, http_status, parse_code, spec


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_has_a_valid_spec(code: ErrorCode) -> None:
    entry = spec(code)
    for status in (entry.status, entry.target_status or entry.status):
        assert 400 <= HTTPStatus(status).value < 600, status  # HTTPStatus() refuses unknown ones
    assert entry.close_code is None or entry.close_code in set(CloseCode)
    assert entry.message and entry.message == entry.message.strip()
    assert entry.param in (None, "file", "model", "language", "known_speaker_references")


def test_the_old_import_path_is_the_same_enum() -> None:
    assert protocol.ErrorCode is ErrorCode


def test_unknown_model_is_a_bad_field_and_not_found_as_the_target() -> None:
    assert spec(ErrorCode.UNKNOWN_MODEL).param == "model"
    assert http_status(ErrorCode.UNKNOWN_MODEL) == 400
    assert http_status(ErrorCode.UNKNOWN_MODEL, target=True) == 404
    assert http_status(ErrorCode.TIMEOUT, target=True) == http_status(ErrorCode.TIMEOUT) == 504


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busy", ErrorCode.BUSY),
        ("worker_lost", ErrorCode.WORKER_LOST),
        ("from_a_newer_peer", ErrorCode.INTERNAL_ERROR),
        ("", ErrorCode.INTERNAL_ERROR),
        (None, ErrorCode.INTERNAL_ERROR),
        ("BUSY", ErrorCode.INTERNAL_ERROR),
    ],
)
def test_parse_code(text: str | None, expected: ErrorCode) -> None:
    assert parse_code(text) is expected


def test_parse_code_default() -> None:
    assert parse_code("nope", ErrorCode.INVALID_AUDIO) is ErrorCode.INVALID_AUDIO
    assert parse_code("timeout", ErrorCode.INVALID_AUDIO) is ErrorCode.TIMEOUT


def test_close_codes() -> None:
    assert close_code(ErrorCode.TOO_MANY_CLIENTS) == 1013
    assert close_code(ErrorCode.RATE_LIMITED) == close_code(ErrorCode.INVALID_API_KEY) == 1008
    with pytest.raises(ValueError):
        close_code(ErrorCode.EMPTY_AUDIO)


@pytest.mark.parametrize(
    ("code", "status", "kind", "param"),
    [
        (ErrorCode.UNKNOWN_MODEL, 400, "invalid_request_error", "model"),
        (ErrorCode.INVALID_AUDIO, 415, "invalid_request_error", "file"),
        (ErrorCode.UNSUPPORTED_LANGUAGE, 400, "invalid_request_error", "language"),
        (ErrorCode.BUSY, 429, "rate_limit_error", None),
        (ErrorCode.NO_WORKERS, 503, "server_error", None),
        (ErrorCode.TIMEOUT, 504, "server_error", None),
        (ErrorCode.INVALID_API_KEY, 401, "invalid_request_error", None),
    ],
)
def test_openai_error_body(code: ErrorCode, status: int, kind: str, param: str | None) -> None:
    error = OpenAIError.from_code(code, "why")
    assert error.status == status
    assert error.body() == {"error": {"message": "why", "type": kind, "param": param, "code": code.value}}
    assert ("retry-after" in error.response().headers) == (status in (429, 503))


def test_openai_error_body_for_a_code_this_gateway_does_not_know() -> None:
    error = OpenAIError.from_code("from_a_newer_worker", "why")
    assert error.status == 500 and error.body()["error"]["code"] == "from_a_newer_worker"


def test_realtime_error_type_follows_the_table() -> None:
    assert realtime_events.error(ErrorCode.INVALID_JSON, "x")["error"]["type"] == "invalid_request_error"
    assert realtime_events.error(ErrorCode.INTERNAL_ERROR, "x")["error"]["type"] == "server_error"
    # OpenAI's own codes are not in the service's table: they are client mistakes.
    assert realtime_events.error("invalid_value", "x")["error"]["type"] == "invalid_request_error"
    assert realtime_events.error("invalid_value", "x", status=503)["error"]["type"] == "server_error"
