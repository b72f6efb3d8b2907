"""Pool-wide live admission, each protocol's ``busy`` and the lag watchdog, under
``whisper-appliance up`` with a real Redis, real workers and tiny.en on real speech.

Workers are paused with SIGSTOP (and resumed with SIGCONT) to make the pool fall behind
on purpose: a stopped worker keeps its heartbeat for its TTL (15 s) but answers nothing,
which is what an overloaded pool looks like from the gateway."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from websockets.sync.client import ClientConnection, connect

from shared import admission
from shared.redis_keys import LIVE_STREAMS_KEY
from tests.conftest import Stack, private_redis, start_stack, stop_stack
from tests.helpers import (
    chunk_stream,
    ffmpeg_convert,
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

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def capped() -> Iterator[Stack]:
    """Two workers, at most one live stream pool-wide."""
    with private_redis() as url:
        running = start_stack(url, workers=2, extra_env={"S2T_MAX_LIVE_STREAMS": "1"}, quiet=True)
        yield running
        stop_stack(running)


@pytest.fixture(scope="module")
def strict() -> Iterator[Stack]:
    """One worker, a lag watchdog with tight bounds, and files refused as soon as one job waits."""
    env = {"S2T_MAX_STREAM_LAG_S": "0.5", "S2T_STREAM_LAG_END_S": "2.0", "S2T_MAX_QUEUE_LENGTH": "1"}
    with private_redis() as url:
        running = start_stack(url, workers=1, extra_env=env, quiet=True)
        yield running
        stop_stack(running)


def live_status(stack: Stack) -> dict[str, Any]:
    live = httpx.get(f"{stack.base_url}/api/status", timeout=10).json()["live"]
    assert isinstance(live, dict)
    return live


def wait_for_streams(stack: Stack, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := live_status(stack)["streams"]) != count:
        assert time.monotonic() < deadline, f"{seen} live streams admitted, expected {count}"
        time.sleep(0.1)


def worker_pids(stack: Stack) -> list[int]:
    return [w["pid"] for w in httpx.get(f"{stack.base_url}/health", timeout=10).json()["live_workers"]]


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def start(ws: ClientConnection) -> tuple[dict[str, Any], float]:
    """start_real_recording; its answer and how long it took."""
    t0 = time.monotonic()
    send_json(ws, {"command": "start_real_recording", "language": "en", "format": "webm"})
    return recv_json(ws, timeout=10), time.monotonic() - t0


def realtime_refusal(stack: Stack) -> tuple[dict[str, Any], float]:
    """A /v1/realtime session's first append; the error event that answers it."""
    url = stack.base_url.replace("http://", "ws://") + "/v1/realtime"
    with connect(url) as ws:
        assert recv_json(ws)["type"] == "session.created"
        update = {
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
        }
        send_json(ws, {"type": "session.update", "session": update})
        assert recv_json(ws)["type"] == "session.updated"
        t0 = time.monotonic()
        send_json(ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(4800)).decode()})
        event = recv_json(ws, timeout=10)
        took = time.monotonic() - t0
        # Appends right after the refusal are not answered with one error each.
        send_json(ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(4800)).decode()})
        with pytest.raises(TimeoutError):
            recv_json(ws, timeout=1.0)
        return event, took


@contextlib.contextmanager
def holding_a_place(stack: Stack, fixture_id: str, timeout: float) -> Iterator[dict[str, Any]]:
    """A /ws stream of the fixture in real time, in a thread, holding one live place:
    the block runs once it is admitted; its ``LiveResult`` is under ``"result"`` after."""
    item = manifest()[fixture_id]
    chunks = chunk_stream(fixture_webm(fixture_id), item["duration_s"])
    held: dict[str, Any] = {}

    def run() -> None:
        with connect(stack.ws_url) as ws:
            held["result"] = stream_live(ws, chunks, timeout=timeout)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for_streams(stack, 1)
        yield held
    finally:
        thread.join(timeout + 30)


def test_second_stream_is_busy_at_once_first_keeps_transcribing_then_a_new_one_is_admitted(
    capped: Stack,
) -> None:
    jfk = manifest()["jfk"]
    with holding_a_place(capped, "jfk", timeout=90) as first:
        with connect(capped.ws_url) as ws:
            refused, took = start(ws)
            assert refused["type"] == "error" and refused["code"] == "busy", refused
            assert refused["retry_after_s"] > 0 and "S2T_MAX_LIVE_STREAMS" in refused["message"]
            assert took < 1.0, f"busy came after {took:.2f} s"
            # The connection stays usable: a ping is answered.
            send_json(ws, {"command": "ping"})
            assert recv_json(ws)["type"] == "pong"

        event, took = realtime_refusal(capped)
        assert event["type"] == "error", event
        assert event["error"]["code"] == "busy" and event["error"]["type"] == "rate_limit_error", event
        assert event["error"]["retry_after_s"] > 0 and took < 1.0

    messages = first["result"].messages
    assert not [m for m in messages if m.get("type") == "error"], messages
    assert wer(jfk["reference"], " ".join(m["transcript"] for m in finals(messages))) <= 0.15
    wait_for_streams(capped, 0, timeout=10)  # released at stop
    with connect(capped.ws_url) as ws:
        again, _ = start(ws)
        assert again.get("recording") is True, again
    wait_for_streams(capped, 0, timeout=10)  # and at close


def deepgram_refusal(stack: Stack) -> tuple[list[Any], int | None, float]:
    """Deepgram's own SDK opens a live stream: what it reads, the close code, and how long
    from the connect to the close."""
    from deepgram import AsyncDeepgramClient

    from tests.test_deepgram import environment

    async def scenario() -> tuple[list[Any], int | None, float]:
        client = AsyncDeepgramClient(api_key="unused-key", environment=environment(stack))
        t0 = time.monotonic()
        messages: list[Any] = []
        async with client.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate="16000") as conn:
            with contextlib.suppress(Exception):
                async for message in conn:
                    messages.append(message)
            code = conn._websocket.close_code
        return messages, code, time.monotonic() - t0

    return asyncio.run(scenario())


def test_deepgram_and_whisperlive_clients_hear_busy_in_their_own_shapes(
    capped: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With the one place taken, the Deepgram SDK reads an ``Error`` frame with variant
    ``BUSY`` and a close 1013 (try again later) within a second, and WhisperLive's own
    client reads ``WAIT`` and stops; the stream holding the place is untouched."""
    from tests.test_whisperlive import run_client

    osr = manifest()["osr_us_000_0034"]  # 35 s: long enough for both clients to ask
    with holding_a_place(capped, "osr_us_000_0034", timeout=120) as first:
        messages, code, took = deepgram_refusal(capped)
        errors = [m for m in messages if getattr(m, "type", None) == "Error"]
        assert [(e.variant, e.code) for e in errors] == [("BUSY", "busy")], messages
        assert "try again" in errors[0].description and code == 1013 and took < 1.0, (code, took)

        waited = run_client(capped, tmp_path_factory.mktemp("whisperlive"))
        # Its client prints the WAIT, then takes the close that follows (as after
        # WhisperLive's own server's WAIT) as final: no reconnect, no transcript.
        assert "Server is full" in waited["printed"], waited["printed"]
        assert "Reconnecting" not in waited["printed"] and waited["transcript"] == [], waited

    held = first["result"].messages
    assert not [m for m in held if m.get("type") == "error"], held
    assert wer(osr["reference"], " ".join(m["transcript"] for m in finals(held))) <= 0.2


def test_a_killed_worker_lowers_capacity_until_its_replacement_beats(capped: Stack) -> None:
    before = live_status(capped)
    assert before["workers"] == 2 and before["capacity_streams"] > 0
    os.kill(worker_pids(capped)[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (during := live_status(capped))["workers"] != 1:
        assert time.monotonic() < deadline, "the dead worker still counts"
        time.sleep(0.1)
    assert during["capacity_streams"] < before["capacity_streams"], (before, during)
    deadline = time.monotonic() + 90
    while live_status(capped)["workers"] != 2:
        assert time.monotonic() < deadline, "the replacement worker never counted"
        time.sleep(0.5)


def test_a_crashed_gateway_s_streams_drop_out_when_their_leases_end(capped: Stack) -> None:
    """Leases in Redis, not in one gateway's memory: a stream nobody refreshes stops counting."""
    client = redis.Redis.from_url(capped.redis_url)
    client.zadd(LIVE_STREAMS_KEY, {"ghost": time.time() + 1.0})
    with connect(capped.ws_url) as ws:
        refused, _ = start(ws)
        assert refused["code"] == "busy", refused
        time.sleep(1.2)
        admitted, _ = start(ws)
        assert admitted.get("recording") is True, admitted
    assert client.zscore(LIVE_STREAMS_KEY, "ghost") is None
    assert admission.LEASE_TTL_S > admission.LEASE_REFRESH_S


def test_a_stream_that_falls_behind_is_ended_with_stream_lagging(strict: Stack) -> None:
    jfk = manifest()["jfk"]
    chunks = chunk_stream(fixture_webm("jfk"), jfk["duration_s"])
    messages: list[dict[str, Any]] = []
    with connect(strict.ws_url) as ws:
        started, _ = start(ws)
        assert started.get("recording") is True, started
        with paused(worker_pids(strict)):
            t0 = time.monotonic()
            for i, chunk in enumerate(chunks):
                ws.send(chunk)
                with contextlib.suppress(TimeoutError):
                    while True:
                        messages.append(
                            recv_json(ws, timeout=max(0.0, t0 + (i + 1) * 0.25 - time.monotonic()))
                        )
                if any(m.get("code") == "stream_lagging" for m in messages):
                    break
            deadline = time.monotonic() + 10
            while not any(m.get("recording") is False for m in messages) and time.monotonic() < deadline:
                messages.append(recv_json(ws, timeout=10))
        lagging = [m for m in messages if m.get("code") == "stream_lagging"]
        assert lagging, messages
        assert any(m.get("recording") is False for m in messages), messages
        # Each queued final was answered once (with the error), none left waiting.
        failed = [m for m in lagging if m.get("utterance_id")]
        assert len({m["utterance_id"] for m in failed}) == len(failed) >= 1
    wait_for_streams(strict, 0, timeout=10)
    metrics = httpx.get(f"{strict.base_url}/metrics", timeout=10).text
    assert 's2t_live_lagging_total{outcome="ended"} 1.0' in metrics
    assert "s2t_live_stream_lag_seconds_count" in metrics


def test_files_get_429_with_retry_after_while_jobs_wait_past_the_queue_bound(strict: Stack) -> None:
    """Files are over capacity when S2T_MAX_QUEUE_LENGTH jobs wait (here 1)."""
    jfk = fixture_bytes("jfk")
    with connect(strict.ws_url) as ws, paused(worker_pids(strict)):
        deadline = time.monotonic() + 10
        while (
            httpx.get(f"{strict.base_url}/api/status", timeout=10).json()["queue_depth"].get("s2t-final", 0)
            < 1
        ):
            assert time.monotonic() < deadline, "no job waits"
            send_json(ws, process_audio_message(jfk, request_id="filler"))
            time.sleep(0.5)
        response = httpx.post(
            f"{strict.base_url}/v1/audio/transcriptions",
            files={"file": ("jfk.ogg", ffmpeg_convert(jfk, "-c:a", "libopus", "-f", "ogg"))},
            data={"model": "whisper-1"},
            timeout=30,
        )
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"].isdigit()
    assert json.loads(response.text)["error"]["code"] == "busy"


def test_gateways_asking_at_once_never_take_more_places_than_the_limit() -> None:
    """The admission script on a real Redis: 20 streams ask at once (as from several
    gateways, each with its own connection) for 5 places; exactly 5 get one, a renewed
    stream keeps its place, a released one frees it, an ended lease frees it too.

    On a Redis of its own: the leases it leaves would count against the session stack's
    live streams for a minute (CI once had the next module's streams all told busy)."""

    async def scenario(redis_url: str) -> None:
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(4)]
        try:
            await clients[0].delete(LIVE_STREAMS_KEY)
            now = time.time()
            decisions = await asyncio.gather(
                *(admission.admit(clients[i % 4], f"s{i}", 5, now) for i in range(20))
            )
            winners = [f"s{i}" for i, d in enumerate(decisions) if d.admitted]
            assert len(winners) == 5 and await admission.admitted_count(clients[0], now) == 5
            again = await admission.admit(clients[1], winners[0], 5, now)
            assert again.admitted and again.streams == 5
            await admission.release(clients[2], winners[1])
            assert (await admission.admit(clients[3], "late", 5, now)).admitted
            assert not (await admission.admit(clients[3], "later", 5, now)).admitted
            await admission.refresh(clients[0], ["late"], now + admission.LEASE_TTL_S)
            # Past the lease of every stream but the renewed one: four places are free.
            after = now + admission.LEASE_TTL_S + 1
            assert await admission.admitted_count(clients[0], after) == 1
            assert (await admission.admit(clients[0], "next", 5, after)).streams == 2
        finally:
            for client in clients:
                await client.aclose()

    with private_redis() as url:
        asyncio.run(scenario(url))
