"""Redis SIGKILLed and restarted (empty: memory only) under a 60 s file and under a live
stream, with the services started apart and under ``whisper-appliance up`` (which
restarts its embedded Redis itself): every piece and utterance is transcribed once, as
well as without the fault, and the client sees ``reconnecting`` / ``reconnected`` but no
error. Real Redis processes, real ffmpeg, the real tiny.en on real speech."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil
import pytest
from websockets.sync.client import ClientConnection, connect

from tests import long_audio
from tests.helpers import (
    chunk_stream,
    collect_until_complete,
    finals,
    fixture_bytes,
    fixture_webm,
    manifest,
    process_audio_message,
    recv_json,
    send_json,
    stream_live,
    wer,
)
from tests.services import Services
from tests.test_resume import CHUNK_S, Reader, cut, send_paced, start
from whisper_appliance.embedded_redis import free_port, start_redis

pytestmark = pytest.mark.slow

#: About 60 s of speech: split into several pieces, more than one worker does at once.
FILE_ORDER = ("jfk", "osr_us_000_0034", "jfk")
LIVE_FIXTURE = "osr_us_000_0034"  # 35 s, ten sentences: utterances before, during and after
KILL_AT_S = 9.0  # into the live stream
AWAY_S = 3.0


@pytest.fixture
def restartable() -> Iterator[tuple[Services, list[subprocess.Popen[bytes]]]]:
    proc, url = start_redis()
    procs = [proc]
    services = Services(url).start(workers=1)
    try:
        yield services, procs
    finally:
        services.stop()
        for p in procs:
            p.kill()
            p.wait(10)


def _restart_apart(services: Services, procs: list[subprocess.Popen[bytes]]) -> Callable[[], None]:
    """SIGKILL the Redis, and start an empty one on the same port ``AWAY_S`` later."""

    def fault() -> None:
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(10)
        time.sleep(AWAY_S)
        procs.append(start_redis(port=urlparse(services.redis_url).port)[0])

    return fault


def _requeued(services: Services) -> float:
    """The audio service's count of jobs it queued again from its buffer."""
    text = httpx.get(f"http://127.0.0.1:{services.audio_port}/metrics", timeout=5).text
    lines = [line for line in text.splitlines() if line.startswith("s2t_audio_jobs_requeued_total")]
    return float(lines[0].split()[-1]) if lines else 0.0


def _file_through_fault(ws: ClientConnection, fault: Callable[[], None]) -> None:
    audio, placements = long_audio.build(FILE_ORDER)
    assert 55 <= long_audio.duration_s(placements) <= 75
    send_json(ws, process_audio_message(audio, language="en", request_id="f"))
    messages = [recv_json(ws, timeout=60)]
    while messages[-1].get("message") != "Audio queued":
        messages.append(recv_json(ws, timeout=60))
    pieces = messages[-1]["pieces"]
    assert pieces >= 3
    t0 = time.monotonic()
    fault()  # right after queueing: pieces waiting in the queue and one on the worker
    messages += collect_until_complete(ws, "f", timeout=240)
    print(f"\n{pieces} pieces; file complete {time.monotonic() - t0:.1f} s after the kill")
    statuses = [m.get("message") for m in messages if m.get("type") == "status"]
    assert "reconnecting" in statuses and "reconnected" in statuses, statuses  # the fault hit
    errors = [m for m in messages if m.get("type") == "error"]
    assert not errors, errors
    done = finals(messages)
    assert len(done) == pieces and len({m["utterance_id"] for m in done}) == pieces, done
    reference = " ".join(p.reference for p in placements)
    hypothesis = " ".join(m["transcript"] for m in done)
    assert wer(reference, hypothesis) <= 0.15, hypothesis  # as tests/test_long_file.py without a fault


def _live_through_fault(ws: ClientConnection, fault: Callable[[], None]) -> None:
    item = manifest()[LIVE_FIXTURE]
    chunks = chunk_stream(fixture_webm(LIVE_FIXTURE), item["duration_s"])
    timer = threading.Timer(KILL_AT_S, fault)
    timer.start()
    try:
        result = stream_live(ws, chunks, timeout=180)  # real time, as a browser sends it
    finally:
        timer.join()
    statuses = [m.get("message") for m in result.messages if m.get("type") == "status"]
    assert "reconnecting" in statuses and "reconnected" in statuses, statuses
    errors = [m for m in result.messages if m.get("type") == "error"]
    assert not errors, errors
    done = finals(result.messages)
    ids = [m["utterance_id"] for m in done]
    assert len(ids) == len(set(ids)), ids  # none twice
    assert len(done) >= 5, done  # ten sentences: utterances on both sides of the fault
    assert wer(item["reference"], " ".join(m["transcript"] for m in done)) <= 0.2, done


def test_a_60s_file_survives_redis_sigkilled_and_restarted_empty(
    restartable: tuple[Services, list[subprocess.Popen[bytes]]],
) -> None:
    services, procs = restartable
    with connect(services.ws_url, max_size=None) as ws:
        _file_through_fault(ws, _restart_apart(services, procs))
    assert _requeued(services) >= 1  # what Redis lost came from the audio service's buffer


def test_a_file_sent_right_after_redis_restarted_empty_is_transcribed(
    restartable: tuple[Services, list[subprocess.Popen[bytes]]],
) -> None:
    """A restarted Redis holds no heartbeats until each worker beats again (up to 5 s),
    and the gateway's first command meets a dropped connection: a file posted in that
    window was told ``no_workers`` (503). It waits for a heartbeat and is transcribed."""
    services, procs = restartable
    _restart_apart(services, procs)()
    started = time.monotonic()
    response = httpx.post(
        f"{services.base_url}/v1/audio/transcriptions",
        files={"file": ("jfk.flac", fixture_bytes("jfk"))},
        data={"model": "whisper-1", "language": "en"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert wer(manifest()["jfk"]["reference"], response.json()["text"]) <= 0.1, response.text
    print(f"\nanswered {time.monotonic() - started:.1f} s after the restart")


def test_a_live_stream_survives_redis_sigkilled_and_restarted_empty(
    restartable: tuple[Services, list[subprocess.Popen[bytes]]],
) -> None:
    services, procs = restartable
    with connect(services.ws_url, max_size=None) as ws:
        _live_through_fault(ws, _restart_apart(services, procs))
    assert _requeued(services) >= 1  # finals cut while Redis was away waited in the buffer


def test_a_parked_live_session_gets_its_finals_through_a_redis_restart(
    restartable: tuple[Services, list[subprocess.Popen[bytes]]],
) -> None:
    """Redis dies as the recording starts, so the first half's finals wait in the audio
    service's buffer; the client's connection drops; Redis comes back while the session
    is parked: its channel is subscribed again, its finals are queued and answered into
    its journal, and the resumed client gets every final once."""
    services, procs = restartable
    item = manifest()["jfk"]
    encoded = fixture_webm("jfk")
    chunks = chunk_stream(encoded, item["duration_s"], CHUNK_S)
    first = connect(services.ws_url, max_size=None)
    started = start(first)
    reader = Reader(first)
    procs[-1].send_signal(signal.SIGKILL)
    procs[-1].wait(10)
    send_paced(first, chunks[: len(chunks) // 2])  # "And so my fellow Americans," at least
    cut(first)
    got_before = reader.finals()
    assert not got_before  # nothing could be answered without Redis
    procs.append(start_redis(port=urlparse(services.redis_url).port)[0])
    time.sleep(5.0)  # the gateway subscribes the parked recording's channel again
    with connect(services.ws_url, max_size=None) as second:
        send_json(
            second,
            {
                "command": "resume",
                "session_id": started["session_id"],
                "resume_token": started["resume_token"],
                "finals_received": len(got_before),
            },
        )
        resumed = recv_json(second)
        assert resumed.get("message") == "Recording resumed", resumed
        rest = Reader(second)
        second.send(encoded[resumed["audio_offset"] :])
        send_json(second, {"command": "stop_recording"})
        assert rest.ended.wait(120), rest.messages
    finals = got_before + rest.finals()
    ids = [m["utterance_id"] for m in finals]
    assert len(ids) == len(set(ids)), ids
    assert [int(i.rsplit("-u", 1)[1]) for i in ids] == list(range(len(finals))), ids
    assert all(m["type"] == "transcript" for m in finals), finals
    errors = [m for m in reader.messages + rest.messages if m.get("type") == "error"]
    assert not errors, errors
    assert wer(item["reference"], " ".join(m["transcript"] for m in finals)) <= 0.15, finals
    assert _requeued(services) >= 1  # the fault hit an utterance in flight


def test_worker_waiting_for_redis_still_stops_on_sigterm(
    restartable: tuple[Services, list[subprocess.Popen[bytes]]],
) -> None:
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


# --- under `whisper-appliance up`, as users run it ----------------------------------------


def _embedded_redis(up: psutil.Process) -> psutil.Process:
    for child in up.children():
        try:
            if "redis" in Path(child.cmdline()[0]).name and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except (psutil.Error, IndexError):
            continue
    raise AssertionError("up runs no embedded Redis")


def test_under_up_a_file_and_a_live_stream_survive_the_embedded_redis_killed(tmp_path: Path) -> None:
    """``up`` restarts its embedded Redis (empty, same port) after its restart backoff,
    here ``AWAY_S``; the file and the stream carry on through it."""
    port = free_port()
    env = {
        **os.environ,
        "S2T_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing answers: embedded
        "S2T_LOG_JSON": "true",
        "S2T_RESTART_BACKOFF_S": str(AWAY_S),
    }
    log = tmp_path / "up.log"
    command = [sys.executable, "-m", "whisper_appliance.cli", "up", "--workers", "1", "--port", str(port)]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{base}/health", timeout=1).json().get("workers", 0) >= 1:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, "up did not become healthy"
            time.sleep(0.25)
        up = psutil.Process(proc.pid)

        def kill_redis() -> None:
            os.kill(_embedded_redis(up).pid, signal.SIGKILL)

        with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            _file_through_fault(ws, kill_redis)
            _live_through_fault(ws, kill_redis)
        # A file sent the moment up has started its new, empty Redis (no heartbeat in it yet).
        killed = _embedded_redis(up).pid
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "up did not restart its Redis"
            with contextlib.suppress(psutil.Error, AssertionError):
                if _embedded_redis(up).pid != killed:
                    break
            time.sleep(0.05)
        response = httpx.post(
            f"{base}/v1/audio/transcriptions",
            files={"file": ("jfk.flac", fixture_bytes("jfk"))},
            data={"model": "whisper-1", "language": "en"},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        assert wer(manifest()["jfk"]["reference"], response.json()["text"]) <= 0.1, response.text
        assert proc.poll() is None  # up kept serving
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = log.read_text(errors="replace")
    assert "redis (pid" in text and "restarting" in text, text[-3000:]
