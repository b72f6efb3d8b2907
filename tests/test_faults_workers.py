"""A worker SIGKILLed mid-job: the job is retried on another worker, or reported as
``worker_lost`` when none is left. Real Redis, real worker processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from websockets.sync.client import connect

from shared import codec
from shared.queue import job_key
from shared.redis_keys import INFLIGHT_KEY, worker_key
from tests.conftest import private_redis
from tests.helpers import (
    chunk_stream,
    collect_until_complete,
    finals,
    fixture_bytes,
    fixture_webm,
    manifest,
    process_audio_message,
    send_json,
    stream_live,
    wer,
)
from tests.services import Services

pytestmark = pytest.mark.slow

#: One thread and a wide beam: a job lasts long enough to be killed in the middle of it.
SLOW_WORKER = {"S2T_CPU_THREADS": "1", "S2T_BEAM_SIZE": "5", "S2T_JOB_TIMEOUT_S": "60"}


@pytest.fixture
def services(request: pytest.FixtureRequest) -> Iterator[Services]:
    with private_redis() as url:
        workers, env = request.param if isinstance(request.param, tuple) else (request.param, {})
        running = Services(url, {**SLOW_WORKER, **env}).start(workers=workers)
        try:
            yield running
        finally:
            running.stop()


def kill_busy_worker(client: redis.Redis, timeout: float = 30.0) -> str:
    """SIGKILL the worker that holds a job right now; return the job's id."""
    deadline = time.monotonic() + timeout
    while not (inflight := client.hgetall(INFLIGHT_KEY)):
        assert time.monotonic() < deadline, "no worker took the job"
        time.sleep(0.01)
    job_id, raw = next(iter(inflight.items()))
    worker_id = codec.loads(raw)["worker"]
    pid = codec.loads(client.get(worker_key(worker_id)))["pid"]
    os.kill(pid, signal.SIGKILL)
    # Killed mid-job: it never released its claim.
    assert client.hexists(INFLIGHT_KEY, job_id), "the job finished before the kill; nothing was tested"
    return job_id.decode()


@pytest.mark.parametrize("services", [2], indirect=True)
def test_killed_worker_job_is_retried_on_another(services: Services) -> None:
    client = redis.Redis.from_url(services.redis_url)
    with connect(services.ws_url) as ws:
        send_json(ws, process_audio_message(fixture_bytes("jfk"), language="en", request_id="k1"))
        kill_busy_worker(client)
        t0 = time.monotonic()
        messages = collect_until_complete(ws, "k1", timeout=60)
    got = finals(messages)
    assert len(got) == 1, messages
    assert wer(manifest()["jfk"]["reference"], got[0]["transcript"]) < 0.3
    assert time.monotonic() - t0 < 45
    deadline = time.monotonic() + 5  # the worker releases its claim just after publishing
    while client.hlen(INFLIGHT_KEY) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.hlen(INFLIGHT_KEY) == 0


@pytest.mark.parametrize("services", [1], indirect=True)
def test_killed_last_worker_reports_worker_lost(services: Services) -> None:
    client = redis.Redis.from_url(services.redis_url)
    with connect(services.ws_url) as ws:
        send_json(ws, process_audio_message(fixture_bytes("jfk"), language="en", request_id="k2"))
        job_id = kill_busy_worker(client)
        t0 = time.monotonic()
        messages = collect_until_complete(ws, "k2", timeout=60)
    errors = [m for m in messages if m.get("type") == "error"]
    assert [e["code"] for e in errors] == ["worker_lost"], messages
    assert errors[0]["utterance_id"] == job_id
    assert errors[0]["request_id"] == "k2"
    assert time.monotonic() - t0 < 30
    assert not client.exists(job_key(job_id)), "the dead attempt's audio is still in Redis"


@pytest.mark.parametrize("services", [(1, {"S2T_JOB_TIMEOUT_S": "1"})], indirect=True)
def test_job_past_its_time_limit_is_reported_as_timeout(services: Services) -> None:
    """RQ's SimpleWorker enforces the limit with SIGALRM in the worker's main thread; the
    job function turns it into an ``error`` ``timeout`` per piece, and the worker lives on."""
    with connect(services.ws_url) as ws:
        send_json(ws, process_audio_message(fixture_bytes("osr_us_000_0034"), language="en", request_id="t1"))
        messages = collect_until_complete(ws, "t1", timeout=60)
    errors = [m for m in messages if m.get("type") == "error"]
    assert errors and all(e["code"] == "timeout" and e["utterance_id"] for e in errors), messages
    pieces = next(m["pieces"] for m in messages if m.get("message") == "Audio queued")
    assert len(errors) + len(finals(messages)) == pieces  # a short piece may finish in time
    assert services.workers[0].poll() is None


@pytest.mark.parametrize("services", [2], indirect=True)
def test_live_final_survives_its_worker_being_killed(services: Services) -> None:
    """Live path: the worker transcribing an utterance's final (or its candidate) is
    killed; the stream still ends with every final, in order, from the other worker."""
    client = redis.Redis.from_url(services.redis_url)
    duration = manifest()["jfk"]["duration_s"]
    chunks = chunk_stream(fixture_webm("jfk"), duration)
    killed: list[str] = []

    def killer() -> None:
        deadline = time.monotonic() + duration + 20
        while not killed and time.monotonic() < deadline:
            for job_id, raw in client.hgetall(INFLIGHT_KEY).items():
                entry = codec.loads(raw)
                if entry["job"]["kind"] in ("final", "candidate"):
                    pid = codec.loads(client.get(worker_key(entry["worker"])) or codec.dumps({"pid": 0}))[
                        "pid"
                    ]
                    if pid and client.hexists(INFLIGHT_KEY, job_id):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(job_id.decode())
                        return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    with connect(services.ws_url) as ws:
        result = stream_live(ws, chunks, timeout=90)
    thread.join(5)
    assert killed, "no final was caught in flight"
    errors = [m for m in result.messages if m.get("type") == "error"]
    assert not errors, errors
    text = " ".join(m["transcript"] for m in finals(result.messages))
    assert wer(manifest()["jfk"]["reference"], text) < 0.3, result.messages
