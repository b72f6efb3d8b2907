"""The gateway sends a file again to an audio service that is restarting (connection
refused, or dropped before an answer), never for an answer: narrow, on httpx's mock
transport; the restart itself under ``up`` is in bench.soak and tests/test_faults_audio.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.audio_client import AudioServiceClient
from shared.protocol import ProtocolError

ANSWER = {"request_id": "r1", "duration_s": 11.0, "pieces": [{"utterance_id": "r1"}]}


def client(
    replies: list[httpx.Response | Exception], retry_s: float = 5.0
) -> tuple[AudioServiceClient, list[int]]:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return AudioServiceClient("http://audio", retry_s=retry_s, transport=httpx.MockTransport(handle)), calls


def test_a_file_is_sent_again_while_the_audio_service_restarts() -> None:
    audio, calls = client(
        [
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            httpx.ConnectError("Connection refused"),
            httpx.Response(200, json=ANSWER),
        ]
    )
    submitted = asyncio.run(audio.submit_file(b"RIFF", request_id="r1"))
    assert (submitted.request_id, len(calls)) == ("r1", 3)


def test_an_answer_is_never_sent_again_even_an_error() -> None:
    audio, calls = client([httpx.Response(400, json={"code": "invalid_audio", "message": "not audio"})])
    with pytest.raises(ProtocolError) as refused:
        asyncio.run(audio.submit_file(b"junk", request_id="r1"))
    assert (refused.value.code, len(calls)) == ("invalid_audio", 1)


def test_past_the_retry_window_the_client_hears_audio_service_unavailable() -> None:
    audio, calls = client([httpx.ConnectError("Connection refused")] * 50, retry_s=0.0)
    with pytest.raises(ProtocolError) as refused:
        asyncio.run(audio.submit_file(b"RIFF", request_id="r1"))
    assert (refused.value.code, len(calls)) == ("audio_service_unavailable", 1)
