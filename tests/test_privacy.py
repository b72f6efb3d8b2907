"""What Redis holds after work is done, and for how long while it waits: no audio or
transcript outlives its job, waiting jobs expire within S2T_JOB_TTL_S."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import redis
from websockets.sync.client import connect

from shared.queue import JOB_KEY_PATTERN
from shared.redis_keys import INFLIGHT_KEY
from tests.conftest import private_redis
from tests.helpers import (
    collect_until_complete,
    finals,
    fixture_bytes,
    process_audio_message,
    recv_json,
    send_json,
)
from tests.services import Services

pytestmark = pytest.mark.slow

JOB_TTL_S = 120


@pytest.fixture
def services() -> Iterator[Services]:
    with private_redis() as url:
        running = Services(url, {"S2T_JOB_TTL_S": str(JOB_TTL_S)}).start(workers=1)
        try:
            yield running
        finally:
            running.stop()


def _values(client: redis.Redis) -> Iterator[tuple[str, bytes]]:
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        name = key.decode()
        if kind == "string":
            yield name, client.get(key) or b""
        elif kind == "hash":
            yield from ((name, v) for v in client.hvals(key))
        elif kind == "list":
            yield from ((name, v) for v in client.lrange(key, 0, -1))
        elif kind == "zset":
            yield from ((name, v) for v in client.zrange(key, 0, -1))
        elif kind == "set":
            yield from ((name, v) for v in client.smembers(key))


def test_nothing_of_a_finished_job_stays_in_redis(services: Services) -> None:
    client = redis.Redis.from_url(services.redis_url)
    audio = fixture_bytes("jfk")
    with connect(services.ws_url) as ws:
        send_json(ws, process_audio_message(audio, language="en", request_id="p"))
        text = finals(collect_until_complete(ws, "p", timeout=60))[0]["transcript"]
    time.sleep(1.0)  # the worker deletes the job right after publishing
    assert not list(client.scan_iter(match=JOB_KEY_PATTERN)), "a finished job's record (with audio) remains"
    assert client.hlen(INFLIGHT_KEY) == 0
    words = text.lower().split()[3:6]  # a few words of the transcript
    for key, value in _values(client):
        assert audio[1000:1064] not in value, key
        assert " ".join(words).encode() not in value.lower(), key


def test_waiting_jobs_expire(services: Services) -> None:
    client = redis.Redis.from_url(services.redis_url)
    services.workers[0].send_signal(signal.SIGSTOP)
    try:
        with connect(services.ws_url) as ws:
            for request_id in ("w1", "w2"):  # the paused worker's blocking pop may hold one
                send_json(
                    ws, process_audio_message(fixture_bytes("jfk"), language="en", request_id=request_id)
                )
                while recv_json(ws).get("message") != "Audio queued":
                    pass
            ttls = [client.ttl(k) for k in client.scan_iter(match=JOB_KEY_PATTERN)]
        assert ttls and all(0 < t <= JOB_TTL_S for t in ttls), ttls
    finally:
        services.workers[0].send_signal(signal.SIGCONT)
