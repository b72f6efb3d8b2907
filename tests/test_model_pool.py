"""Models across the worker pool, against the real stack: switching to the multilingual
``base`` mid-session (German WER, detection, translation), two connections on two
models at once, ``/api/languages``; and, on a one-worker stack of its own with
``S2T_MAX_MODELS=1`` and a tiny load timeout, the timeout error and LRU eviction as the
workers' heartbeats show it, and a per-model backend (``@openai-whisper``)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import Stack, start_stack, stop_stack
from tests.helpers import (
    collect_until_complete,
    finals,
    fixture_webm,
    joined_text,
    load_model,
    manifest,
    process_audio_message,
    send_json,
    wait_for_worker_models,
    wer,
    worker_models,
)
from whisper_appliance.embedded_redis import start_redis

pytestmark = pytest.mark.slow

GERMAN = ("thorsten_1386ecbb", "thorsten_gt_03")
ENGLISH_WORDS = re.compile(r"\b(the|and|is|are|was|were|as|also|of|at|to|in)\b")


def _transcribe(
    ws: ClientConnection, fixture_id: str, request_id: str, **fields: Any
) -> list[dict[str, Any]]:
    send_json(ws, process_audio_message(fixture_webm(fixture_id), request_id=request_id, **fields))
    messages = collect_until_complete(ws, request_id)
    assert finals(messages), messages
    return finals(messages)


def test_switch_to_base_mid_session_german_detection_translation(stack: Stack) -> None:
    with connect(stack.ws_url, max_size=None) as ws:
        (english,) = _transcribe(ws, "jfk", "before", language="en")
        assert english["model"] == "tiny.en"
        loaded = load_model(ws, "base")[-1]
        assert loaded["type"] == "model_loaded" and loaded["model"] == "base" and loaded["workers"] == 2
        for fixture_id in GERMAN:
            reference = manifest()[fixture_id]["reference"]
            explicit = _transcribe(ws, fixture_id, f"{fixture_id}-de", language="de")
            assert {m["model"] for m in explicit} == {"base"} and explicit[0]["language"] == "de"
            assert wer(reference, joined_text(explicit)) <= 0.25, joined_text(explicit)
            detected = _transcribe(ws, fixture_id, f"{fixture_id}-auto", language="auto")
            assert detected[0]["language"] == "de" and detected[0]["language_probability"] > 0.5
            assert wer(reference, joined_text(detected)) <= 0.25, joined_text(detected)
        translated = joined_text(
            _transcribe(ws, "thorsten_gt_03", "translate", language="de", task="translate")
        )
        assert ENGLISH_WORDS.search(translated.lower()), translated
        assert wer(manifest()["thorsten_gt_03"]["reference"], translated) > 0.6, translated


def test_two_connections_on_two_models_at_once(stack: Stack) -> None:
    with connect(stack.ws_url, max_size=None) as on_base, connect(stack.ws_url, max_size=None) as on_tiny:
        assert load_model(on_base, "base")[-1]["type"] == "model_loaded"
        send_json(
            on_base, process_audio_message(fixture_webm("thorsten_gt_03"), language="de", request_id="b")
        )
        send_json(on_tiny, process_audio_message(fixture_webm("jfk"), request_id="t"))
        base_finals = finals(collect_until_complete(on_base, "b"))
        tiny_finals = finals(collect_until_complete(on_tiny, "t"))
    assert {m["model"] for m in base_finals} == {"base"} and {m["model"] for m in tiny_finals} == {"tiny.en"}
    assert wer(manifest()["thorsten_gt_03"]["reference"], joined_text(base_finals)) <= 0.25
    assert wer(manifest()["jfk"]["reference"], joined_text(tiny_finals)) <= 0.10


def test_languages_and_models_api(stack: Stack) -> None:
    base = httpx.get(f"{stack.base_url}/api/languages", params={"model": "base"}).json()
    codes = [item["code"] for item in base["languages"]]
    assert base["multilingual"] and len(codes) == 99 and {"de", "en", "fr"} <= set(codes)
    assert {"code": "de", "name": "german"} in base["languages"]
    default = httpx.get(f"{stack.base_url}/api/languages").json()
    assert default["model"] == "tiny.en" and default["languages"] == [{"code": "en", "name": "english"}]
    unknown = httpx.get(f"{stack.base_url}/api/languages", params={"model": "gpt-99"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_model"
    listed = {m["name"]: m for m in httpx.get(f"{stack.base_url}/api/models").json()["models"]}
    assert listed["tiny.en"]["languages"] == ["en"] and listed["tiny.en"]["english_only"]
    assert listed["base"]["backend"] == "faster-whisper" and "de" in listed["base"]["languages"]


@pytest.fixture(scope="module")
def small_stack() -> Iterator[Stack]:
    """One worker keeping one model, a load timeout no load can meet; its own Redis, so
    the session stack's workers neither take its jobs nor answer its control messages."""
    redis_proc, redis_url = start_redis()
    env = {"S2T_MAX_MODELS": "1", "S2T_MODEL_LOAD_TIMEOUT_S": "0.05", "S2T_MODEL": "tiny.en"}
    running = start_stack(redis_url, workers=1, extra_env=env)
    try:
        yield running
    finally:
        stop_stack(running)
        redis_proc.terminate()
        redis_proc.wait(10)


def test_load_timeout_then_lru_eviction(small_stack: Stack) -> None:
    assert worker_models(small_stack.base_url) == [["tiny.en"]]
    with connect(small_stack.ws_url, max_size=None) as ws:
        reply = load_model(ws, "base")[-1]
        assert reply["type"] == "error" and reply["code"] == "timeout" and "base" in reply["message"]
        # The worker finishes the load it started; with room for one model, tiny.en goes.
        wait_for_worker_models(small_stack.base_url, [["base"]])
        (final,) = _transcribe(ws, "jfk", "jfk", model="tiny.en")
        assert (
            final["model"] == "tiny.en" and wer(manifest()["jfk"]["reference"], final["transcript"]) <= 0.10
        )
        wait_for_worker_models(small_stack.base_url, [["tiny.en"]], timeout=10)
        unknown = load_model(ws, "no-such-model")[-1]
        assert unknown["type"] == "error" and unknown["code"] == "unknown_model"


@pytest.mark.skipif(
    importlib.util.find_spec("whisper") is None,
    reason="SKIPPED: openai-whisper extra not installed (scripts/test.sh installs torch, then .[openai])",
)
def test_per_model_backend_in_the_pool(small_stack: Stack) -> None:
    name = "tiny.en@openai-whisper"
    with connect(small_stack.ws_url, max_size=None) as ws:
        (final,) = _transcribe(ws, "jfk", "ow", model=name, language="en")
    assert final["model"] == name and final["backend"] == "openai-whisper"
    assert wer(manifest()["jfk"]["reference"], final["transcript"]) <= 0.10
    wait_for_worker_models(small_stack.base_url, [[name]], timeout=10)
