"""Redis restarting under a live session: the gateway says ``reconnecting``, subscribes
its reply channels again, and the next utterance is transcribed. Real Redis process,
restarted on the same port; real services."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from websockets.sync.client import connect

from tests.helpers import (
    collect_until_complete,
    finals,
    fixture_bytes,
    manifest,
    process_audio_message,
    recv_json,
    send_json,
    wer,
)
from tests.services import Services
from whisper_appliance.embedded_redis import start_redis

pytestmark = pytest.mark.slow


@pytest.fixture
def restartable() -> Iterator[tuple[Services, list]]:
    proc, url = start_redis()
    procs = [proc]
    services = Services(url).start(workers=1)
    try:
        yield services, procs
    finally:
        services.stop()
        for p in procs:
            p.terminate()
            p.wait(10)


def transcribe(ws, request_id: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    send_json(ws, process_audio_message(fixture_bytes("jfk"), language="en", request_id=request_id))
    return collect_until_complete(ws, request_id, timeout=90)


def test_session_recovers_after_redis_restart(restartable: tuple[Services, list]) -> None:  # type: ignore[type-arg]
    services, procs = restartable
    reference = manifest()["jfk"]["reference"]
    with connect(services.ws_url) as ws:
        assert wer(reference, finals(transcribe(ws, "before"))[0]["transcript"]) < 0.3

        procs[0].terminate()
        procs[0].wait(10)
        seen = [recv_json(ws, timeout=15)]
        while seen[-1].get("message") != "reconnecting":
            seen.append(recv_json(ws, timeout=15))
        assert seen[-1] == {"type": "status", "message": "reconnecting", "redis": False, "model": "tiny.en"}
        procs.append(start_redis(port=urlparse(services.redis_url).port)[0])
        while seen[-1].get("message") != "reconnected":
            seen.append(recv_json(ws, timeout=30))
        services.wait_workers(1, timeout=60)  # the worker's next heartbeat, in the new Redis

        send_json(ws, {"command": "ping"})
        assert recv_json(ws, timeout=10) == {"type": "pong"}
        t0 = time.monotonic()
        after = transcribe(ws, "after")
        assert finals(after) and wer(reference, finals(after)[0]["transcript"]) < 0.3, (seen, after)
        assert time.monotonic() - t0 < 60


def test_work_in_flight_during_redis_restart_is_reported(restartable: tuple[Services, list]) -> None:  # type: ignore[type-arg]
    """A file queued when Redis goes: each piece still ends in a final or an error, and
    the worker that lost Redis in the middle of a job serves the next request."""
    services, procs = restartable
    with connect(services.ws_url) as ws:
        send_json(ws, process_audio_message(fixture_bytes("osr_us_000_0034"), language="en", request_id="f"))
        messages = [recv_json(ws, timeout=30)]
        while messages[-1].get("message") != "Audio queued":
            messages.append(recv_json(ws, timeout=30))
        pieces = messages[-1]["pieces"]
        procs[0].terminate()
        procs[0].wait(10)
        while messages[-1].get("message") != "reconnecting":  # Redis stays away a while
            messages.append(recv_json(ws, timeout=15))
        time.sleep(2)
        procs.append(start_redis(port=urlparse(services.redis_url).port)[0])
        messages += collect_until_complete(ws, "f", timeout=60)
        answered = [m for m in messages if m.get("type") == "error" or (m.get("final") is True)]
        assert len(answered) == pieces, messages
        assert {m.get("code") for m in answered if m["type"] == "error"} <= {"redis_unavailable"}

        services.wait_workers(1, timeout=60)
        after = finals(transcribe(ws, "after"))
        assert after and wer(manifest()["jfk"]["reference"], after[0]["transcript"]) < 0.3, after


def test_worker_waiting_for_redis_still_stops_on_sigterm(restartable: tuple[Services, list]) -> None:  # type: ignore[type-arg]
    """Lost Redis mid-job, the worker waits for it to come back; a shutdown meanwhile must
    end that wait, or `docker compose stop` would have to kill it."""
    services, procs = restartable
    with connect(services.ws_url) as ws:
        send_json(ws, process_audio_message(fixture_bytes("osr_us_000_0034"), language="en", request_id="f"))
        message = recv_json(ws, timeout=30)
        while message.get("message") != "Audio queued":
            message = recv_json(ws, timeout=30)
        procs[0].terminate()
        procs[0].wait(10)
        time.sleep(5)  # the job ends without Redis; the worker is waiting for it now
        worker = services.workers[0]
        assert worker.poll() is None  # it did not die with Redis
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
