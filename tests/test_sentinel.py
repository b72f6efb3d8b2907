"""Redis high availability: ``whisper-appliance up`` pointed at a real Sentinel (the same
redis-server binary in sentinel mode) watching a primary and its replica. The primary is
SIGKILLed mid-session; Sentinel promotes the replica and every service carries on: a file
over HTTP, a file and a live stream over a /ws connection opened before the failover
(whose reply channel must be subscribed again on the new primary), /health healthy."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from websockets.sync.client import ClientConnection, connect

from shared.redis_keys import INFLIGHT_KEY
from tests.conftest import Stack, start_stack, stop_stack
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
from whisper_appliance.embedded_redis import free_port, redis_server_binary

pytestmark = pytest.mark.slow

T = TypeVar("T")

SERVICE = "s2t"
#: Sentinel calls the primary down after 1 s without an answer (production: 5-30 s).
DOWN_AFTER_MS = 1000


def _ping(port: int) -> bool:
    with contextlib.suppress(redis.RedisError):
        return bool(redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    return False


def _wait(what: str, check: Callable[[], T], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)
    return result


def _data_node(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """A memory-only redis-server whose replication never touches the disk either
    (diskless sync and load): the jobs it replicates carry audio."""
    port = free_port()
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp)),
            *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
            *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
            *("--repl-diskless-load", "on-empty-db"),
            *args,
        ],
        stdout=subprocess.DEVNULL,
    )
    _wait(f"redis-server on {port}", lambda: _ping(port), 10)
    return proc, port


@dataclass
class Topology:
    primary: subprocess.Popen[bytes]
    primary_port: int
    replica_port: int
    sentinel_port: int
    procs: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def primary_address(self) -> tuple[str, int] | None:
        with contextlib.suppress(redis.RedisError):
            sentinel = redis.Redis(port=self.sentinel_port, socket_timeout=1)
            found = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return (found[0].decode(), int(found[1])) if found else None
        return None


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        primary, primary_port = _data_node(tmp_path)
        procs.append(primary)
        replica, replica_port = _data_node(tmp_path, "--replicaof", "127.0.0.1", str(primary_port))
        procs.append(replica)

        def in_sync() -> bool:
            info = redis.Redis(port=replica_port).info("replication")
            return info.get("master_link_status") == "up"

        _wait("replica in sync", in_sync, 20)
        # Sentinel rewrites its configuration file as it learns the topology: a tmp file.
        sentinel_port = free_port()
        conf = tmp_path / "sentinel.conf"
        conf.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        procs.append(
            subprocess.Popen(
                [redis_server_binary(), str(conf), "--sentinel", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL,
            )
        )
        sentinel = redis.Redis(port=sentinel_port, socket_timeout=1)
        # Failover needs Sentinel to know the replica (it learns it from the primary's INFO).
        _wait(
            "sentinel sees the replica",
            lambda: _ping(sentinel_port) and sentinel.execute_command("SENTINEL", "REPLICAS", SERVICE),
            30,
        )
        yield Topology(primary, primary_port, replica_port, sentinel_port, procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def _heartbeats(port: int) -> list[bytes]:
    with contextlib.suppress(redis.RedisError):
        return list(redis.Redis(port=port, socket_timeout=1).scan_iter(match="s2t:worker:*"))
    return []


def _http_file_text(stack: Stack) -> str:
    response = httpx.post(
        f"{stack.base_url}/v1/audio/transcriptions",
        files={"file": ("jfk.flac", fixture_bytes("jfk"))},
        data={"model": "whisper-1"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["text"])


def _ws_file_text(ws: ClientConnection, request_id: str) -> str:
    send_json(ws, process_audio_message(fixture_bytes("jfk"), language="en", request_id=request_id))
    messages = collect_until_complete(ws, request_id, timeout=120)
    assert finals(messages), messages
    return " ".join(m["transcript"] for m in finals(messages))


def _live_text(ws: ClientConnection) -> str:
    result = stream_live(ws, chunk_stream(fixture_webm("jfk"), manifest()["jfk"]["duration_s"]), speed=2.0)
    errors = [m for m in result.messages if m.get("type") == "error"]
    assert not errors, errors
    return " ".join(m["transcript"] for m in finals(result.messages))


def _everything_transcribes(stack: Stack, ws: ClientConnection, when: str) -> None:
    reference = manifest()["jfk"]["reference"]
    for how, text in (
        ("HTTP file", _http_file_text(stack)),
        ("/ws file", _ws_file_text(ws, f"file-{when}")),
        ("/ws live", _live_text(ws)),
    ):
        assert wer(reference, text) <= 0.2, f"{how} {when} the failover: {text!r}"


def _healthy(stack: Stack) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        response = httpx.get(f"{stack.base_url}/health", timeout=2)
        return response.status_code == 200 and response.json()["status"] == "healthy"
    return False


def test_every_service_carries_on_after_a_sentinel_failover(topology: Topology) -> None:
    stack = start_stack(topology.url, workers=1)
    try:
        # `up` used the Sentinel's primary, not an embedded Redis of its own.
        assert _heartbeats(topology.primary_port), "no worker heartbeat on the Sentinel's primary"
        with connect(stack.ws_url, max_size=None) as ws:
            _everything_transcribes(stack, ws, "before")

            topology.primary.send_signal(signal.SIGKILL)
            topology.primary.wait(10)
            killed_at = time.monotonic()
            seen = [recv_json(ws, timeout=30)]
            while seen[-1].get("message") != "reconnected":
                seen.append(recv_json(ws, timeout=60))
            assert any(m.get("message") == "reconnecting" for m in seen), seen
            promoted = _wait(
                "Sentinel promotes the replica",
                lambda: topology.primary_address() == ("127.0.0.1", topology.replica_port),
                60,
            )
            assert promoted
            _wait("a worker heartbeat on the new primary", lambda: _heartbeats(topology.replica_port), 60)
            _wait("/health healthy", lambda: _healthy(stack), 60)
            print(f"failover: services serving again {time.monotonic() - killed_at:.1f} s after the kill")

            send_json(ws, {"command": "ping"})
            assert recv_json(ws, timeout=10) == {"type": "pong"}
            _everything_transcribes(stack, ws, "after")
        assert _healthy(stack)
        assert stack.process.poll() is None, "up stopped"
    finally:
        stop_stack(stack)


def _answer(ws: ClientConnection, request_id: str, seen: list[dict[str, Any]]) -> None:
    """Read until the request is answered and the gateway has said ``reconnected``."""
    answered = reconnected = False
    while not (answered and reconnected):
        message = recv_json(ws, timeout=120)
        seen.append(message)
        reconnected = reconnected or message.get("message") == "reconnected"
        answered = answered or (
            message.get("request_id") == request_id
            and (
                message.get("message") == "Processing complete"
                or (message.get("type") == "error" and message.get("utterance_id") is None)
            )
        )


def _kill_primary_and_watch(
    topology: Topology, ws: ClientConnection, request_id: str
) -> list[dict[str, Any]]:
    topology.primary.send_signal(signal.SIGKILL)
    topology.primary.wait(10)
    killed_at = time.monotonic()
    seen: list[dict[str, Any]] = []
    _answer(ws, request_id, seen)
    print(f"client saw, within {time.monotonic() - killed_at:.1f} s of the kill: {seen}")
    return seen


def _assert_answered_as_the_contract_says(seen: list[dict[str, Any]], fixture_id: str) -> None:
    """Its transcript, or ``redis_unavailable`` (send it again), and nothing else."""
    errors = {m["code"] for m in seen if m.get("type") == "error"}
    assert errors <= {"redis_unavailable"}, seen
    if not errors:
        text = " ".join(m["transcript"] for m in finals(seen))
        assert wer(manifest()[fixture_id]["reference"], text) <= 0.3, seen


def test_a_piece_a_worker_holds_during_the_failover_is_answered(topology: Topology) -> None:
    """What a client sees in the failover's seconds: ``reconnecting``, ``reconnected``, and
    its file in flight answered, never left waiting; the connection then transcribes again."""
    stack = start_stack(topology.url, workers=1)
    try:
        with connect(stack.ws_url, max_size=None) as ws:
            audio = fixture_bytes("osr_us_000_0034")  # 35 s: two pieces, seconds of work for tiny.en
            send_json(ws, process_audio_message(audio, language="en", request_id="held"))
            primary = redis.Redis(port=topology.primary_port)
            _wait("the worker takes a piece", lambda: primary.hlen(INFLIGHT_KEY) > 0, 60)
            seen = _kill_primary_and_watch(topology, ws, "held")
            _assert_answered_as_the_contract_says(seen, "osr_us_000_0034")
            _wait("/health healthy", lambda: _healthy(stack), 60)
            assert wer(manifest()["jfk"]["reference"], _ws_file_text(ws, "after")) <= 0.2
    finally:
        stop_stack(stack)


def test_a_file_being_queued_during_the_failover_is_answered(topology: Topology) -> None:
    stack = start_stack(topology.url, workers=1)
    try:
        with connect(stack.ws_url, max_size=None) as ws:
            audio = fixture_bytes("osr_us_000_0034")
            send_json(ws, process_audio_message(audio, language="en", request_id="queued"))
            assert recv_json(ws, timeout=60)["message"] == "Processing audio"  # decoding starts now
            seen = _kill_primary_and_watch(topology, ws, "queued")
            _assert_answered_as_the_contract_says(seen, "osr_us_000_0034")
    finally:
        stop_stack(stack)


def test_a_live_stream_carries_on_across_the_failover(topology: Topology) -> None:
    """The recording goes on through the failover: utterances spoken after it are
    transcribed, and one in flight at the kill may only get ``redis_unavailable``."""
    stack = start_stack(topology.url, workers=1, quiet=True)
    try:
        item = manifest()["osr_us_000_0034"]  # 35 s, ten sentences
        killer = threading.Timer(8.0, topology.primary.send_signal, args=(signal.SIGKILL,))
        with connect(stack.ws_url, max_size=None) as ws:
            killer.start()
            result = stream_live(ws, chunk_stream(fixture_webm("osr_us_000_0034"), item["duration_s"]))
        killer.join()
        assert any(m.get("message") == "reconnected" for m in result.messages), result.messages
        errors = {m["code"] for m in result.messages if m.get("type") == "error"}
        assert errors <= {"redis_unavailable"}, result.messages
        after = [m for m in finals(result.messages) if m["start"] > 15.0]  # spoken well after the kill
        assert after, result.messages
        text = " ".join(m["transcript"] for m in finals(result.messages))
        assert wer(item["reference"], text) <= 0.35, text
    finally:
        stop_stack(stack)
