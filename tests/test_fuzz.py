"""Property-based: random and malformed input at /ws and the HTTP API is answered with a
defined error (or a clean close), and a normal client connected alongside keeps getting
pongs and transcripts throughout."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from shared.protocol import COMMANDS, ErrorCode
from tests.conftest import private_redis
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

pytestmark = pytest.mark.slow

CODES = {c.value for c in ErrorCode}
REPLY_TYPES = {"error", "status", "transcript", "model_loaded", "pong"}
CLEAN_CLOSES = {1000, 1008, 1009}
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
field_names = st.sampled_from(
    ["audio_data", "language", "format", "model", "model_name", "task", "request_id", "device_id", "mode"]
)
commands = st.fixed_dictionaries(
    {"command": st.sampled_from([c for c in COMMANDS if c != "load_model"]) | st.text(max_size=20)},
    optional={},
).flatmap(lambda base: st.dictionaries(field_names, json_values, max_size=4).map(lambda f: {**f, **base}))
huge = st.sampled_from([10_000, 300_000, 2_000_000]).map(lambda n: "x" * n)
deep = st.integers(100, 100_000).map(lambda n: "[" * n + "]" * n)
unicode_text = st.text(min_size=1, max_size=500)
base64_junk = st.binary(max_size=2000).map(
    lambda b: json.dumps({"command": "process_audio", "audio_data": base64.b64encode(b).decode()})
)
text_frames = (
    commands.map(json.dumps)
    | json_values.map(json.dumps)
    | unicode_text
    | huge
    | huge.map(lambda s: json.dumps({"command": "process_audio", "audio_data": s}))
    | deep
    | base64_junk
)
frames = text_frames | st.binary(min_size=1, max_size=4000)


@dataclass
class Bystander:
    """A well-behaved client: pings every half second, transcribes jfk now and then."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    pongs: int = 0
    transcripts: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        try:
            with connect(self.url) as ws:
                rounds = 0
                while not self.stop.is_set():
                    send_json(ws, {"command": "ping"})
                    t0 = time.monotonic()
                    while recv_json(ws, timeout=10)["type"] != "pong":
                        pass
                    if time.monotonic() - t0 > 5:
                        self.failures.append(f"pong after {time.monotonic() - t0:.1f} s")
                    self.pongs += 1
                    if rounds % 20 == 0:
                        send_json(ws, process_audio_message(fixture_bytes("jfk"), language="en"))
                        self.transcripts += [m["transcript"] for m in finals(collect_until_complete(ws))]
                    rounds += 1
                    self.stop.wait(0.5)
        except Exception as exc:
            self.failures.append(repr(exc))


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[Services, Bystander]]:
    # The rate limit would end the fuzzing connection early; it has its own test.
    with private_redis() as url:
        running = Services(url, {"S2T_RATE_LIMIT_PER_MINUTE": "0"}).start(workers=1)
        bystander = Bystander(running.ws_url)
        thread = threading.Thread(target=bystander.run, daemon=True)
        thread.start()
        try:
            yield running, bystander
        finally:
            bystander.stop.set()
            thread.join(120)
            running.stop()


class Fuzzer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.closes: list[int] = []
        self.sent = 0

    def _conn(self) -> ClientConnection:
        if self.ws is None:
            self.ws = connect(self.url, max_size=None)
        return self.ws

    def check_reply(self, message: dict[str, Any]) -> None:
        assert message.get("type") in REPLY_TYPES, message
        if message["type"] == "error":
            assert message.get("code") in CODES and isinstance(message.get("message"), str), message

    def send(self, frame: str | bytes) -> None:
        """Send one frame, then a ping; every reply up to the pong must be defined."""
        ws = self._conn()
        try:
            ws.send(frame)
            send_json(ws, {"command": "ping"})
            while (message := recv_json(ws, timeout=30))["type"] != "pong":
                self.check_reply(message)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code in CLEAN_CLOSES, exc
            self.closes.append(exc.rcvd.code)
            self.ws = None

    def drain(self) -> None:
        """Late replies (file errors come after the pong) are checked too."""
        if self.ws is None:
            return
        deadline = time.monotonic() + 20
        send_json(self.ws, {"command": "stop_recording"})
        while time.monotonic() < deadline:
            try:
                self.check_reply(recv_json(self.ws, timeout=3))
            except TimeoutError:
                break
        self.ws.close()


def test_ws_survives_random_input(fuzzed: tuple[Services, Bystander]) -> None:
    services, bystander = fuzzed
    fuzzer = Fuzzer(services.ws_url)

    @SETTINGS
    @given(frame=frames)
    def one(frame: str | bytes) -> None:
        fuzzer.sent += 1
        fuzzer.send(frame)

    one()
    fuzzer.drain()
    print(f"ws examples: {fuzzer.sent}, clean closes: {fuzzer.closes}")
    assert fuzzer.sent >= SETTINGS.max_examples
    assert not bystander.failures, bystander.failures
    assert bystander.pongs > 0


api_fields = st.dictionaries(
    st.sampled_from(
        ["model", "language", "response_format", "temperature", "prompt", "timestamp_granularities[]"]
    ),
    st.text(max_size=30)
    | st.sampled_from(["whisper-1", "tiny.en", "json", "verbose_json", "srt", "1.5", "-1"]),
    max_size=4,
)


def test_http_api_survives_random_input(fuzzed: tuple[Services, Bystander]) -> None:
    services, bystander = fuzzed
    client = httpx.Client(base_url=services.base_url, timeout=60)
    statuses: list[int] = []

    @SETTINGS
    @given(
        audio=st.binary(max_size=3000) | st.just(b""),
        form=api_fields,
        raw=st.none() | st.binary(max_size=500),
        load_body=json_values.map(json.dumps) | st.binary(max_size=200) | deep.map(str),
    )
    def one(audio: bytes, form: dict[str, str], raw: bytes | None, load_body: str | bytes) -> None:
        statuses.append(0)
        if raw is None:
            response = client.post("/v1/audio/transcriptions", files={"file": ("a.bin", audio)}, data=form)
        else:  # not multipart at all
            response = client.post("/v1/audio/transcriptions", content=raw)
        assert 400 <= response.status_code < 500 or response.status_code in (200, 503), response.text
        if response.status_code != 200:
            error = response.json()["error"]
            assert isinstance(error["message"], str) and error.get("code"), error
        loaded = client.post("/api/load-model", content=load_body)
        assert 400 <= loaded.status_code < 500 or loaded.status_code == 200, loaded.text
        if loaded.status_code != 200:
            assert loaded.json()["code"] in CODES, loaded.text

    one()
    assert len(statuses) >= SETTINGS.max_examples
    assert not bystander.failures, bystander.failures


def test_bystander_was_served_throughout(fuzzed: tuple[Services, Bystander]) -> None:
    _, bystander = fuzzed
    deadline = time.monotonic() + 60
    while len(bystander.transcripts) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not bystander.failures, bystander.failures
    assert len(bystander.transcripts) >= 2
    assert all(wer(manifest()["jfk"]["reference"], t) < 0.3 for t in bystander.transcripts)
