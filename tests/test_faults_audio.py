"""The audio service killed mid-stream: the recording client gets ``error``
``audio_service_unavailable`` and ``recording: false``, another client keeps being served,
and once the audio service is back the first client can start again."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from tests.conftest import private_redis
from tests.helpers import (
    chunk_stream,
    finals,
    fixture_webm,
    manifest,
    recv_json,
    send_json,
    stream_live,
    wer,
)
from tests.services import Services

pytestmark = pytest.mark.slow


@pytest.fixture
def services() -> Iterator[Services]:
    with private_redis() as url:
        running = Services(url).start(workers=1)
        try:
            yield running
        finally:
            running.stop()


def test_audio_service_killed_mid_stream(services: Services) -> None:
    duration = manifest()["jfk"]["duration_s"]
    chunks = chunk_stream(fixture_webm("jfk"), duration)
    with connect(services.ws_url) as ws, connect(services.ws_url) as other:
        send_json(ws, {"command": "start_real_recording", "language": "en", "format": "webm"})
        assert recv_json(ws)["recording"] is True
        for chunk in chunks[:8]:
            ws.send(chunk)
        assert services.audio is not None
        services.audio.send_signal(signal.SIGKILL)
        services.audio.wait(10)
        seen = [recv_json(ws, timeout=15)]
        while seen[-1].get("recording") is not False:
            seen.append(recv_json(ws, timeout=15))
        errors = [m for m in seen if m.get("type") == "error"]
        assert [e["code"] for e in errors] == ["audio_service_unavailable"], seen

        send_json(other, {"command": "ping"})  # the gateway serves the other client
        assert recv_json(other, timeout=5) == {"type": "pong"}
        send_json(ws, {"command": "start_real_recording", "language": "en", "format": "webm"})
        refused = recv_json(ws, timeout=15)
        assert refused["type"] == "error" and refused["code"] == "audio_service_unavailable", refused

        services.start_audio()
        result = stream_live(ws, chunks, speed=4.0, timeout=60)
        text = " ".join(m["transcript"] for m in finals(result.messages))
        assert wer(manifest()["jfk"]["reference"], text) < 0.3, result.messages


def test_audio_service_killed_while_decoding_a_file(services: Services) -> None:
    """The gateway sends the file again once the audio service is back (gateway/audio_client.py):
    the client gets its transcript, each piece once, and no error."""
    from tests.helpers import collect_until_complete, fixture_bytes, joined_text, process_audio_message

    with connect(services.ws_url, max_size=None) as ws:
        audio = fixture_bytes("osr_us_000_0034")
        send_json(ws, process_audio_message(audio, language="en", request_id="f1"))
        assert recv_json(ws, timeout=30)["message"] == "Processing audio"  # the gateway posts it now
        assert services.audio is not None
        services.audio.send_signal(signal.SIGKILL)
        services.audio.wait(10)
        services.start_audio()
        messages = collect_until_complete(ws, "f1", timeout=120)
    errors = [m for m in messages if m.get("type") == "error"]
    assert not errors, messages
    ids = [m["utterance_id"] for m in finals(messages)]
    assert len(ids) == len(set(ids)), ids
    assert wer(manifest()["osr_us_000_0034"]["reference"], joined_text(messages)) <= 0.1, messages
