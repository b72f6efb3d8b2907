"""A live recording survives its connection: cut without a close frame (as a network
blip does), resumed on a new connection with the session id and token, every final
exactly once, the audio sent on from the server's offset. Real stack under
``whisper-appliance up``, real tiny.en."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import STACK_RESUME_WINDOW_S, Stack
from tests.helpers import chunk_stream, fixture_webm, manifest, recv_json, send_json, wer

pytestmark = pytest.mark.slow

CHUNK_S = 0.25


class Reader:
    """Everything a connection receives, on a thread, until it ends."""

    def __init__(self, ws: ClientConnection) -> None:
        self.messages: list[dict[str, Any]] = []
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ws,), daemon=True)
        self._thread.start()

    def _run(self, ws: ClientConnection) -> None:
        while True:
            try:
                message = recv_json(ws, timeout=120)
            except Exception:
                return
            self.messages.append(message)
            if message.get("recording") is False:
                self.ended.set()
                return

    def finals(self) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if (m["type"] == "transcript" and m["final"]) or (m["type"] == "error" and m.get("utterance_id"))
        ]


def cut(ws: ClientConnection) -> None:
    """Lose the connection the way a network does: no close frame."""
    ws.socket.shutdown(socket.SHUT_RDWR)
    ws.socket.close()


def start(ws: ClientConnection) -> dict[str, Any]:
    send_json(ws, {"command": "start_real_recording", "language": "en", "format": "webm"})
    started = recv_json(ws)
    assert started.get("recording") is True and started["session_id"] and started["resume_token"], started
    return started


def send_paced(ws: ClientConnection, chunks: list[bytes]) -> None:
    t0 = time.monotonic()
    for i, chunk in enumerate(chunks):
        ws.send(chunk)
        time.sleep(max(0.0, t0 + (i + 1) * CHUNK_S - time.monotonic()))


def test_a_recording_cut_for_5_s_resumes_with_every_final_once(stack: Stack) -> None:
    item = manifest()["jfk"]
    encoded = fixture_webm("jfk")
    chunks = chunk_stream(encoded, item["duration_s"], CHUNK_S)
    before_cut = len(chunks) // 2
    first = connect(stack.ws_url, max_size=None)
    started = start(first)
    reader = Reader(first)
    send_paced(first, chunks[:before_cut])
    time.sleep(1.0)  # let a final or two come
    sent = sum(len(c) for c in chunks[:before_cut])
    cut(first)
    got_before = reader.finals()
    time.sleep(5.0)  # the client keeps recording; the server keeps transcribing

    with connect(stack.ws_url, max_size=None) as second:
        resume = {
            "command": "resume",
            "session_id": started["session_id"],
            "resume_token": started["resume_token"],
            "finals_received": len(got_before),
        }
        send_json(second, resume)
        resumed = recv_json(second)
        assert resumed.get("message") == "Recording resumed" and resumed["recording"] is True, resumed
        offset = resumed["audio_offset"]
        assert 0 < offset <= sent  # what the server fed; the client goes on from there
        rest = Reader(second)
        tail = encoded[offset:]
        second.send(tail[: len(tail) // 2])  # the audio recorded during the gap, at once
        send_paced(second, chunk_stream(tail[len(tail) // 2 :], item["duration_s"] / 4, CHUNK_S))
        send_json(second, {"command": "stop_recording"})
        assert rest.ended.wait(90), rest.messages

    finals = got_before + rest.finals()
    ids = [m["utterance_id"] for m in finals]
    assert len(ids) == len(set(ids)), ids  # nothing twice
    indices = [int(i.rsplit("-u", 1)[1]) for i in ids]
    assert indices == list(range(len(finals))), ids  # nothing lost, in order
    assert all(m["type"] == "transcript" for m in finals), finals
    text = " ".join(m["transcript"] for m in finals)
    assert wer(item["reference"], text) <= 0.15, text  # as test_live_stream asks of an uncut stream


def test_a_wrong_token_is_refused_and_after_the_window_the_session_is_gone(stack: Stack) -> None:
    item = manifest()["jfk"]
    chunks = chunk_stream(fixture_webm("jfk"), item["duration_s"], CHUNK_S)
    first = connect(stack.ws_url, max_size=None)
    started = start(first)
    send_paced(first, chunks[:6])
    cut(first)
    time.sleep(0.5)
    with connect(stack.ws_url, max_size=None) as other:
        for token in (started["resume_token"][:-2] + "xx", "", "x" * 43):
            send_json(
                other, {"command": "resume", "session_id": started["session_id"], "resume_token": token}
            )
            refused = recv_json(other)
            assert (refused["type"], refused["code"]) == ("error", "resume_invalid"), refused
            assert started["resume_token"] not in str(refused)
        time.sleep(STACK_RESUME_WINDOW_S + 1.0)  # past the stack's S2T_RESUME_WINDOW_S
        send_json(
            other,
            {
                "command": "resume",
                "session_id": started["session_id"],
                "resume_token": started["resume_token"],
            },
        )
        expired = recv_json(other)
        assert (expired["type"], expired["code"]) == ("error", "resume_expired"), expired
        send_json(other, {"command": "ping"})
        assert recv_json(other)["type"] == "pong"  # the connection serves on


def test_a_realtime_session_resumes_with_the_extension(stack: Stack) -> None:
    """``/v1/realtime?resumable=true``: the same recording continues on a new connection
    (``x_session.resume``), each item completed once across both."""
    import base64
    import json

    from tests.test_realtime import pcm24, session, silence

    audio = pcm24("jfk") + silence(1.5)
    step = int(24000 * 2 * CHUNK_S)
    url = stack.base_url.replace("http://", "ws://") + "/v1/realtime?resumable=true"
    completed: list[str] = []
    events: list[dict[str, Any]] = []

    def reader(ws: ClientConnection, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                event = json.loads(ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            except Exception:
                return
            events.append(event)
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                completed.append(event["transcript"])

    def append(ws: ClientConnection, data: bytes, paced: bool) -> None:
        t0 = time.monotonic()
        for n, at in enumerate(range(0, len(data), step)):
            chunk = base64.b64encode(data[at : at + step]).decode()
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            if paced:
                time.sleep(max(0.0, t0 + (n + 1) * CHUNK_S - time.monotonic()))

    update = {"type": "session.update", "session": session()}
    first = connect(url, max_size=None)
    first.send(json.dumps(update))
    stop_first = threading.Event()
    threading.Thread(target=reader, args=(first, stop_first), daemon=True).start()
    append(first, audio[: len(audio) // 2], paced=True)
    time.sleep(1.0)
    resumable = next(e for e in events if e["type"] == "x_session.resumable")
    stop_first.set()
    cut(first)
    got_before = len(completed)
    time.sleep(3.0)

    with connect(url, max_size=None) as second:
        second.send(json.dumps(update))
        resume = {
            "type": "x_session.resume",
            "session_id": resumable["session_id"],
            "resume_token": resumable["resume_token"],
            "finals_received": got_before,
        }
        second.send(json.dumps(resume))
        stop = threading.Event()
        threading.Thread(target=reader, args=(second, stop), daemon=True).start()
        deadline = time.monotonic() + 15
        while not any(e["type"] == "x_session.resumed" for e in events) and time.monotonic() < deadline:
            time.sleep(0.1)
        resumed = next(e for e in events if e["type"] == "x_session.resumed")
        append(second, audio[resumed["audio_offset"] // 3 * 3 :], paced=False)
        deadline = time.monotonic() + 60
        reference = manifest()["jfk"]["reference"]
        while time.monotonic() < deadline and wer(reference, " ".join(completed)) > 0.15:
            time.sleep(0.5)
        time.sleep(2.0)  # anything more (a duplicate) would come now
        stop.set()
    assert not [e for e in events if e["type"] == "error"], events
    assert wer(reference, " ".join(completed)) <= 0.15, completed
    assert len(completed) == len(set(completed)), completed  # no item twice
