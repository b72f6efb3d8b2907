"""Limits and access on a real stack: message rate (live audio chunks not counted),
client count, bounded Redis queue (``busy`` / HTTP 429) and the Origin check."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import private_redis
from tests.helpers import (
    chunk_stream,
    finals,
    fixture_bytes,
    fixture_webm,
    manifest,
    process_audio_message,
    recv_json,
    send_json,
    stream_live,
)
from tests.services import Services

pytestmark = pytest.mark.slow

RATE, GRACE, CLIENTS = 10, 3, 3


@pytest.fixture(scope="module")
def limited() -> Iterator[Services]:
    env = {
        "S2T_RATE_LIMIT_PER_MINUTE": str(RATE),
        "S2T_RATE_LIMIT_GRACE": str(GRACE),
        "S2T_MAX_CLIENTS": str(CLIENTS),
        "S2T_ALLOWED_ORIGINS": "https://app.example",
    }
    with private_redis() as url:
        running = Services(url, env).start(workers=1)
        try:
            yield running
        finally:
            running.stop()


def test_rate_limit_refuses_then_closes_1008(limited: Services) -> None:
    with connect(limited.ws_url) as ws:
        for _ in range(RATE):
            send_json(ws, {"command": "ping"})
            assert recv_json(ws) == {"type": "pong"}
        for _ in range(GRACE):
            send_json(ws, {"command": "ping"})
            refused = recv_json(ws)
            assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
        send_json(ws, {"command": "ping"})
        assert recv_json(ws)["code"] == "rate_limited"
        with pytest.raises(ConnectionClosed) as closed:
            recv_json(ws, timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_live_audio_chunks_do_not_count(limited: Services) -> None:
    duration = manifest()["jfk"]["duration_s"]
    chunks = chunk_stream(fixture_webm("jfk"), duration)
    assert len(chunks) > 4 * RATE
    with connect(limited.ws_url) as ws:
        result = stream_live(ws, chunks, speed=4.0, timeout=60)
        assert not [m for m in result.messages if m.get("code") == "rate_limited"]
        assert finals(result.messages)
        send_json(ws, {"command": "ping"})  # start + stop were 2 of the RATE
        assert recv_json(ws) == {"type": "pong"}


def test_client_over_the_limit_is_refused_1013(limited: Services) -> None:
    opened = [connect(limited.ws_url) for _ in range(CLIENTS)]
    try:
        for ws in opened:
            send_json(ws, {"command": "ping"})
            assert recv_json(ws) == {"type": "pong"}
        with connect(limited.ws_url) as extra:
            refusal = recv_json(extra)
            assert refusal["code"] == "too_many_clients"
            with pytest.raises(ConnectionClosed) as closed:
                recv_json(extra, timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    finally:
        for ws in opened:
            ws.close()


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (None, True),
        ("https://app.example", True),  # listed in S2T_ALLOWED_ORIGINS
        ("SAME", True),  # the gateway's own origin (its demo page)
        ("https://evil.example", False),
        ("http://localhost:3000", False),  # an explicit list replaces the localhost default
    ],
)
def test_websocket_origin(limited: Services, origin: str | None, accepted: bool) -> None:
    if origin == "SAME":
        origin = limited.base_url
    headers = {"Origin": origin} if origin else None
    if accepted:
        with connect(limited.ws_url, additional_headers=headers) as ws:
            send_json(ws, {"command": "ping"})
            assert recv_json(ws) == {"type": "pong"}
    else:
        with pytest.raises(InvalidStatus) as refused:
            connect(limited.ws_url, additional_headers=headers)
        assert refused.value.response.status_code == 403


def test_no_wildcard_cors(limited: Services) -> None:
    response = httpx.options(
        f"{limited.base_url}/v1/audio/transcriptions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.headers.get("access-control-allow-origin") in (None, "")
    get = httpx.get(f"{limited.base_url}/api/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in get.headers


def test_full_queue_answers_busy() -> None:
    """The only worker is paused (SIGSTOP; its heartbeat lives on for a few seconds), so
    jobs pile up; with room for one waiting job, a later file is refused ``busy`` on /ws
    and with 429 on the HTTP API."""
    with private_redis() as url:
        running = Services(url, {"S2T_MAX_QUEUE_LENGTH": "1"}).start(workers=1)
        running.workers[0].send_signal(signal.SIGSTOP)
        try:
            with connect(running.ws_url) as ws:
                outcome: list[dict] = []  # type: ignore[type-arg]
                for attempt in range(4):  # the paused worker's blocking pop may hold one job
                    request_id = f"f{attempt}"
                    send_json(
                        ws, process_audio_message(fixture_bytes("jfk"), language="en", request_id=request_id)
                    )
                    while True:
                        message = recv_json(ws, timeout=30)
                        if message.get("message") == "Audio queued" or message["type"] == "error":
                            break
                    outcome.append(message)
                    if message["type"] == "error":
                        break
                assert outcome[-1]["code"] == "busy" and outcome[-1]["request_id"] == request_id, outcome
                assert len(outcome) >= 2  # one job waited before the refusal
                send_json(ws, {"command": "start_real_recording", "language": "en", "format": "webm"})
                refused = recv_json(ws, timeout=15)
                assert refused["type"] == "error" and refused["code"] == "busy", refused
            response = httpx.post(
                f"{running.base_url}/v1/audio/transcriptions",
                files={"file": ("jfk.flac", fixture_bytes("jfk"))},
                data={"model": "tiny.en"},
                timeout=30,
            )
            assert response.status_code == 429 and response.json()["error"]["code"] == "busy", response.text
        finally:
            running.workers[0].send_signal(signal.SIGCONT)
            running.stop()


def test_sixth_file_in_flight_is_busy(limited: Services) -> None:
    """Back-pressure per connection: five files in flight, the sixth is refused ``busy``;
    the five still complete."""
    audio = fixture_bytes("jfk")
    with connect(limited.ws_url, max_size=None) as ws:
        for n in range(6):
            send_json(ws, process_audio_message(audio, language="en", request_id=f"b{n}"))
        complete, refused = set(), []
        while len(complete) + len(refused) < 6:
            message = recv_json(ws, timeout=120)
            if message["type"] == "error":
                refused.append(message)
            elif message.get("message") == "Processing complete":
                complete.add(message["request_id"])
    assert [(m["code"], m["request_id"]) for m in refused] == [("busy", "b5")]
    assert complete == {f"b{n}" for n in range(5)}
