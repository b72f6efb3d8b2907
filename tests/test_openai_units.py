"""Unit tests of the OpenAI-compatible API's parts that need no running service:
subtitle rendering, the API key middleware, and decode hints reaching the job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import srt
import webvtt
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from audio_service.app import _decode_hints
from gateway.app import create_app
from gateway.auth import APIKeyMiddleware, key_subprotocol, protected
from shared import codec, subtitles
from shared.config import Settings
from shared.jobs import TranscriptionJob
from tests.conftest import private_redis
from tests.helpers import fixture_bytes
from whisper_appliance.transcribe_cli import sse_events

WORDS = [{"word": "Hello", "start": 0.5, "end": 1.0}, {"word": "there.", "start": 1.1, "end": 2.0}]
PIECES = [
    {
        "transcript": "Hello there. General.",
        "start": 0.5,
        "end": 4.0,
        "language": "en",
        "segments": [
            {"start": 0.5, "end": 2.0, "text": "Hello there.", "words": WORDS},
            {"start": 2.5, "end": 4.0, "text": "General."},
        ],
    },
    {"transcript": "", "start": 30.0, "end": 31.0, "segments": []},
    {
        "transcript": "Kenobi.",
        "start": 3725.25,
        "end": 3726.5,
        "segments": [{"start": 3725.25, "end": 3726.5, "text": "Kenobi."}],
    },
]


def test_timestamps() -> None:
    assert subtitles.timestamp(3725.25, ",") == "01:02:05,250"
    assert subtitles.timestamp(0.0004, ".") == "00:00:00.000"
    assert subtitles.timestamp(59.9996, ".") == "00:01:00.000"


def test_srt_and_vtt_parse_with_independent_parsers() -> None:
    cues = list(srt.parse(subtitles.srt(PIECES), ignore_errors=False))
    assert [c.content for c in cues] == ["Hello there.", "General.", "Kenobi."]
    assert cues[2].start.total_seconds() == 3725.25 and cues[2].end.total_seconds() == 3726.5
    captions = webvtt.from_string(subtitles.vtt(PIECES), strict=True).captions
    assert [c.text for c in captions] == ["Hello there.", "General.", "Kenobi."]
    assert captions[0].start == "00:00:00.500"


def test_verbose_json_and_json() -> None:
    body = subtitles.render("verbose_json", PIECES, duration_s=3727.2, task="translate", words=True)
    assert body["text"] == "Hello there. General. Kenobi." and body["task"] == "translate"
    assert [s["id"] for s in body["segments"]] == [0, 1, 2] and body["segments"][0]["text"] == " Hello there."
    assert "words" not in body["segments"][0] and [w["word"] for w in body["words"]] == ["Hello", "there."]
    assert body["usage"] == {"type": "duration", "seconds": 3728} and body["language"] == "en"
    no_words = subtitles.render("verbose_json", PIECES, duration_s=1.0, task="transcribe")
    assert "words" not in no_words
    assert subtitles.render("json", PIECES, duration_s=1.0, task="transcribe")["text"] == body["text"]
    assert subtitles.render("text", [], duration_s=0.0, task="transcribe") == "\n"


def test_decode_hints_travel_with_the_job() -> None:
    hints = _decode_hints({"prompt": "Kennedy", "temperature": 0.4, "word_timestamps": True, "x": 1})
    assert hints == {"prompt": "Kennedy", "temperature": 0.4, "word_timestamps": True}
    assert _decode_hints({"prompt": 3, "temperature": True, "word_timestamps": "yes"}) == {}
    job = TranscriptionJob(utterance_id="u", reply_channel="c", pcm=b"\0\0", model="tiny.en", **hints)
    again = TranscriptionJob.from_wire(codec.loads(codec.dumps(job.to_wire())))
    assert (again.prompt, again.temperature, again.word_timestamps) == ("Kennedy", 0.4, True)


def test_sse_parsing() -> None:
    lines = ['data: {"a": 1}', "", ": comment", 'data: {"b":', "data: 2}", ""]
    assert list(sse_events(iter(lines))) == [{"a": 1}, {"b": 2}]


def _app() -> Starlette:
    async def ok(_: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    app = Starlette(
        routes=[
            Route("/health", ok),
            Route("/api/status", ok),
            Route("/v1/models", ok),
            WebSocketRoute("/ws", ws),
        ]
    )
    return APIKeyMiddleware(app, api_key="k3y")  # type: ignore[return-value]


def test_middleware_http() -> None:
    client = TestClient(_app())
    assert client.get("/health").text == "ok"
    for path in ("/api/status", "/v1/models"):
        refused = client.get(path, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401 and json.loads(refused.text)["error"]["code"] == "invalid_api_key"
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Basic k3y"}).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer k3y"}).text == "ok"


def test_middleware_websocket() -> None:
    client = TestClient(_app())
    with client.websocket_connect("/ws?api_key=k3y") as ws:
        assert ws.receive_text() == "hi"
    with client.websocket_connect("/ws", headers={"Authorization": "Bearer k3y"}) as ws:
        assert ws.receive_text() == "hi"
    with client.websocket_connect("/ws", subprotocols=["whisper-appliance", "bearer.k3y"]) as ws:
        assert ws.accepted_subprotocol == "whisper-appliance"
    for bad in ("/ws", "/ws?api_key=nope"):
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(bad):
            pass
        assert refused.value.code == 1008


def test_protected_paths_and_subprotocol_key() -> None:
    assert protected("/v1/audio/transcriptions") and protected("/api/status") and protected("/ws")
    assert not protected("/") and not protected("/health") and not protected("/metrics")
    assert not protected("/v1x") and not protected("/wsx")
    assert key_subprotocol(["a", "bearer.k"], "k") == "bearer.k" and key_subprotocol(["k"], "k") == "k"
    assert key_subprotocol(["bearer.x"], "k") is None


@pytest.fixture(scope="module")
def idle_redis() -> Iterator[str]:
    """A Redis no worker heartbeats on."""
    with private_redis() as url:
        yield url


def _gateway(redis_url: str, **settings: Any) -> TestClient:
    """The gateway in-process, open (no key), with no audio service behind it."""
    settings = {"api_key": None, "audio_service_url": "http://127.0.0.1:9", **settings}
    return TestClient(create_app(Settings(redis_url=redis_url, **settings)))


@pytest.mark.slow
def test_open_without_key_and_503_without_workers(idle_redis: str) -> None:
    with _gateway(idle_redis) as client:
        assert "whisper-1" in [m["id"] for m in client.get("/v1/models").json()["data"]]
        response = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("jfk.flac", fixture_bytes("jfk"))},
            data={"model": "whisper-1"},
        )
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["error"]["code"] == "no_workers"
    assert response.json()["error"]["type"] == "server_error"


@pytest.mark.slow
def test_routing_errors_under_v1_are_openai_shaped(idle_redis: str) -> None:
    with _gateway(idle_redis) as client:
        wrong_method = client.get("/v1/audio/transcriptions")
        unknown = client.post("/v1/audio/speech")
        elsewhere = client.get("/nowhere")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "invalid_request_error"
    assert elsewhere.status_code == 404 and elsewhere.text == "Not Found"


@pytest.mark.slow
def test_429_when_requests_in_flight_reach_the_limit(idle_redis: str) -> None:
    with _gateway(idle_redis, max_clients=0) as client:
        response = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("jfk.flac", fixture_bytes("jfk"))},
            data={"model": "whisper-1"},
        )
    assert response.status_code == 429 and response.json()["error"]["code"] == "busy"
