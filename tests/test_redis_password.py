"""Redis with a password (``S2T_REDIS_PASSWORD``): every service authenticates, and a
client without the password is refused by Redis."""

from __future__ import annotations

import pytest
import redis
from websockets.sync.client import connect

from tests.conftest import start_stack, stop_stack
from tests.helpers import (
    collect_until_complete,
    finals,
    fixture_bytes,
    manifest,
    process_audio_message,
    send_json,
    wer,
)
from tests.services import Services
from whisper_appliance.embedded_redis import start_redis

pytestmark = pytest.mark.slow

PASSWORD = "redis-pw-9d2e"


def test_services_work_with_a_password_protected_redis() -> None:
    proc, url = start_redis(password=PASSWORD)
    services = Services(url, {"S2T_REDIS_PASSWORD": PASSWORD})
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url).ping()
        services.start(workers=1)
        with connect(services.ws_url) as ws:
            send_json(ws, process_audio_message(fixture_bytes("jfk"), language="en", request_id="pw"))
            got = finals(collect_until_complete(ws, "pw", timeout=60))
        assert got and wer(manifest()["jfk"]["reference"], got[0]["transcript"]) < 0.3
    finally:
        services.stop()
        proc.terminate()
        proc.wait(10)


def test_up_uses_a_password_protected_redis_rather_than_embedding_one() -> None:
    """`up` asks Redis with the services' password whether it answers: without it, the
    protected Redis looked absent and `up` started an embedded one next to it."""
    proc, url = start_redis(password=PASSWORD)
    try:
        stack = start_stack(url, workers=1, extra_env={"S2T_REDIS_PASSWORD": PASSWORD}, quiet=True)
        try:
            protected = redis.Redis.from_url(url, password=PASSWORD)
            assert list(protected.scan_iter(match="s2t:worker:*")), "no worker heartbeat in that Redis"
        finally:
            stop_stack(stack)
    finally:
        proc.terminate()
        proc.wait(10)
