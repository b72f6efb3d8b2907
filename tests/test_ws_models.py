"""Model selection over /ws: load across the pool, unknown names, and a job whose model
cannot be had still ends in an error that carries its utterance_id."""

from __future__ import annotations

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import Stack
from tests.helpers import (
    collect_until_complete,
    fixture_webm,
    load_model,
    process_audio_message,
    recv_json,
    send_json,
)

#: Every test here loads models in the stack's workers: the slow tier.
pytestmark = pytest.mark.slow

MISSING_HUB_MODEL = "whisper-appliance-tests/no-such-model"


def test_load_model_reaches_every_worker(stack: Stack) -> None:
    with connect(stack.ws_url) as ws:
        messages = load_model(ws, "tiny.en")
    loaded = messages[-1]
    assert loaded["type"] == "model_loaded" and loaded["model"] == "tiny.en"
    assert loaded["workers"] == 2 and loaded["load_time"] >= 0
    assert any(m.get("progress") == 1.0 for m in messages[:-1])


def test_load_unknown_model_is_refused(stack: Stack) -> None:
    with connect(stack.ws_url) as ws:
        send_json(ws, {"command": "load_model", "model_name": "gpt-99"})
        reply = recv_json(ws)
    assert reply["type"] == "error" and reply["code"] == "unknown_model" and "tiny.en" in reply["message"]
    response = httpx.post(f"{stack.base_url}/api/load-model", json={"model_name": "gpt-99"})
    assert response.status_code == 404 and response.json()["code"] == "unknown_model"


def test_unobtainable_model_fails_the_job_with_its_utterance_id(stack: Stack) -> None:
    with connect(stack.ws_url, max_size=None) as ws:
        send_json(ws, process_audio_message(fixture_webm("jfk"), model=MISSING_HUB_MODEL, request_id="m"))
        messages = collect_until_complete(ws)
    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "model_unavailable"
    assert errors[0]["utterance_id"] and errors[0]["request_id"] == "m"
    assert messages[-1]["message"] == "Processing complete"


def test_health_and_status(stack: Stack) -> None:
    health = httpx.get(f"{stack.base_url}/health").json()
    assert health["status"] == "healthy" and health["workers"] == 2 and health["redis"] == "ok"
    assert {"whisper_model", "connected_clients", "memory_usage", "uptime"} <= set(health)
    status = httpx.get(f"{stack.base_url}/api/status").json()
    assert len(status["workers"]) == 2 and set(status["queue_depth"]) == {"s2t-final", "s2t-partial"}
    names = [m["name"] for m in httpx.get(f"{stack.base_url}/api/models").json()["models"]]
    assert {"tiny.en", "base"} <= set(names)
