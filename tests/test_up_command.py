"""``whisper-appliance up`` as a user starts it: embedded Redis when none answers, the trio
comes up, transcribes, and SIGTERM leaves no process behind."""

from __future__ import annotations

import psutil
import pytest
from websockets.sync.client import connect

from tests.conftest import start_stack, stop_stack
from tests.helpers import (
    collect_until_complete,
    fixture_webm,
    joined_text,
    manifest,
    process_audio_message,
    send_json,
    wer,
)
from whisper_appliance.embedded_redis import free_port

#: Runs ``whisper-appliance up`` (Redis, the trio, a worker with tiny.en): the slow tier.
pytestmark = pytest.mark.slow


def test_up_starts_everything_transcribes_and_stops_cleanly() -> None:
    unused_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing answers: up must embed one
    stack = start_stack(unused_redis, workers=1)
    try:
        children = psutil.Process(stack.process.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names, "up should have started an embedded Redis"
        assert sum("worker" in " ".join(c.cmdline()) for c in children) == 1
        with connect(stack.ws_url, max_size=None) as ws:
            send_json(ws, process_audio_message(fixture_webm("jfk")))
            messages = collect_until_complete(ws)
        assert wer(manifest()["jfk"]["reference"], joined_text(messages)) <= 0.10
    finally:
        stop_stack(stack)
    assert stack.process.returncode == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running after SIGTERM: {[c.pid for c in alive]}"
