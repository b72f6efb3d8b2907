"""Bad input on /ws: each gets an ``error`` with a stable code and a clear message, and
the same connection then transcribes a valid file."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import Stack
from tests.helpers import (
    collect_until_complete,
    fixture_webm,
    joined_text,
    manifest,
    process_audio_message,
    recv_json,
    send_json,
    wer,
)

#: Every test here talks to the whole stack: the slow tier.
pytestmark = pytest.mark.slow


def _send_text(text: str) -> Callable[[ClientConnection], None]:
    return lambda ws: ws.send(text)


def _send_msg(message: dict) -> Callable[[ClientConnection], None]:
    return lambda ws: send_json(ws, message)


def _send_bytes(data: bytes) -> Callable[[ClientConnection], None]:
    return lambda ws: ws.send(data)


ELEVEN_MB = b"\x1a\x45\xdf\xa3" + b"\0" * (11 * 1024 * 1024)

CASES = {
    "invalid_json": (_send_text("{not json"), "invalid_json"),
    "not_an_object": (_send_text("[1, 2, 3]"), "invalid_message"),
    "nested_too_deep": (_send_text("[" * 100_000 + "]" * 100_000), "invalid_json"),
    "integer_too_long": (_send_text('{"command": "ping", "n": 1' + "0" * 5000 + "}"), "invalid_json"),
    "unknown_command": (_send_msg({"command": "format_disk"}), "unknown_command"),
    "no_command": (_send_msg({"audio_data": "AAAA"}), "missing_field"),
    "missing_audio_data": (_send_msg({"command": "process_audio"}), "missing_field"),
    "missing_model_name": (_send_msg({"command": "load_model"}), "missing_field"),
    "wrong_field_type": (_send_msg({"command": "process_audio", "audio_data": 42}), "invalid_field"),
    "bad_base64": (_send_msg({"command": "process_audio", "audio_data": "@@not base64!!"}), "invalid_base64"),
    "empty_base64": (_send_msg({"command": "process_audio", "audio_data": ""}), "empty_audio"),
    "not_audio_base64": (
        _send_msg(process_audio_message(b"this is a text file, not audio at all" * 50)),
        "invalid_audio",
    ),
    "not_audio_binary": (_send_bytes(b"\x00\x01garbage" * 1000), "invalid_audio"),
    "empty_binary": (_send_bytes(b""), "empty_audio"),
    "too_large_binary": (_send_bytes(ELEVEN_MB), "audio_too_large"),
    "too_large_base64": (_send_msg(process_audio_message(ELEVEN_MB)), "audio_too_large"),
    "unknown_model": (_send_msg(process_audio_message(b"RIFF", model="no-such-model")), "unknown_model"),
    "german_on_english_model": (
        _send_msg(process_audio_message(b"RIFF", model="tiny.en", language="de")),
        "unsupported_language",
    ),
    "recording_german_on_english_model": (
        _send_msg({"command": "start_real_recording", "language": "de", "model": "tiny.en"}),
        "unsupported_language",
    ),
    "recording_language_the_model_lacks": (
        _send_msg({"command": "start_real_recording", "language": "xx", "model": "base"}),
        "unsupported_language",
    ),
    "bad_task": (_send_msg(process_audio_message(b"RIFF", task="summarize")), "invalid_field"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_error_and_connection_keeps_working(stack: Stack, case: str) -> None:
    send_bad, expected_code = CASES[case]
    with connect(stack.ws_url, max_size=None) as ws:
        send_bad(ws)
        reply = recv_json(ws, timeout=30)
        while reply["type"] == "status":  # "Processing audio" precedes a decode failure
            reply = recv_json(ws, timeout=30)
        assert reply["type"] == "error", reply
        assert reply["code"] == expected_code, reply
        assert isinstance(reply["message"], str) and len(reply["message"]) > 5

        send_json(ws, {"command": "ping"})
        assert recv_json(ws) == {"type": "pong"}


def test_valid_request_succeeds_after_a_series_of_bad_ones(stack: Stack) -> None:
    with connect(stack.ws_url, max_size=None) as ws:
        for send_bad, code in CASES.values():
            send_bad(ws)
            reply = recv_json(ws, timeout=30)
            while reply["type"] == "status":
                reply = recv_json(ws, timeout=30)
            assert reply["code"] == code
        send_json(ws, process_audio_message(fixture_webm("jfk"), request_id="after"))
        messages = collect_until_complete(ws, request_id="after")
    assert wer(manifest()["jfk"]["reference"], joined_text(messages)) <= 0.10


def test_get_status_and_ping(stack: Stack) -> None:
    with connect(stack.ws_url) as ws:
        send_json(ws, {"command": "get_status"})
        status = recv_json(ws)
        assert status["type"] == "status" and status["model"] == "tiny.en" and status["workers"] == 2
        ws.send(json.dumps({"command": "ping"}))
        assert recv_json(ws) == {"type": "pong"}


def test_base64_data_url_prefix_accepted(stack: Stack) -> None:
    audio = "data:audio/webm;base64," + base64.b64encode(fixture_webm("jfk")).decode()
    with connect(stack.ws_url, max_size=None) as ws:
        send_json(ws, {"command": "process_audio", "audio_data": audio})
        messages = collect_until_complete(ws)
    assert wer(manifest()["jfk"]["reference"], joined_text(messages)) <= 0.10


def test_hostile_oversized_frame_closes_with_1009_and_service_keeps_serving(stack: Stack) -> None:
    with connect(stack.ws_url, max_size=None) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.send(b"\0" * (25 * 1024 * 1024))
        recv_json(ws, timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with connect(stack.ws_url) as ws:
        send_json(ws, {"command": "ping"})
        assert recv_json(ws) == {"type": "pong"}
