"""A ``/v1/realtime`` session without services, for the conformance suite: the real
:class:`gateway.realtime.session.RealtimeProtocol` (config, commits, clear, renderer,
deltas, error logging) and the real :class:`gateway.utterances.UtteranceMachine`, with
the audio service and the workers replaced by a script.

Why a script and not the stack: the suite replays OpenAI's documented client event
sequences and checks the *shape and order* of every server event; that is the session's
state machine, which runs in microseconds. Whether speech is heard and words are right is
what the slow tests (real VAD, real Whisper) are for, so here "speech" is any non-zero
sample and each utterance's words are given by the test.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway import events
from gateway.realtime.session import RealtimeProtocol, bytes_per_ms
from gateway.utterances import UtteranceMachine
from gateway.worker_reply import WorkerReply
from shared import protocol
from shared import stream_protocol as sp


@dataclass
class Settings:
    model: str = "tiny.en"
    max_audio_bytes: int = 25 * 1024 * 1024


class FakeWebSocket:
    def __init__(self, query: dict[str, str], headers: dict[str, str]) -> None:
        self.query_params = query
        self.headers = headers


class ScriptedRecording:
    """The audio service and workers as a script: speech is non-zero audio, a pause of
    the session's ``pause_s`` (server VAD) or a commit ends the utterance, and its final
    is the next of ``transcripts``. Events go through the real utterance machine."""

    def __init__(self, conn: FakeConnection, vad: sp.VadSettings | None, fmt: str) -> None:
        self.conn = conn
        self.vad = vad
        self.format = fmt
        self.live = True
        self.machine = UtteranceMachine("stream", "tiny.en", lambda i: f"stream-{i}")
        self.index = 0
        self.seq = 0
        self.ms = 0.0  # stream time
        self.speech_from: float | None = None  # the open utterance's start
        self.silent_ms = 0.0  # silence since the open utterance's last speech
        self.controls: list[Any] = []

    async def feed(self, data: bytes) -> None:
        step = bytes_per_ms(self.format) * 10  # 10 ms blocks
        for at in range(0, len(data), step):
            block = data[at : at + step]
            speech = any(block)
            if speech and self.speech_from is None:
                self.speech_from = self.ms
                self._emit(self.machine.speech_started(self.index, round(self.ms)))
            self.silent_ms = 0.0 if speech else self.silent_ms + 10
            self.ms += len(block) / bytes_per_ms(self.format)
            pause = self.vad.pause_s if self.vad is not None else None
            if self.speech_from is not None and pause is not None and self.silent_ms >= pause * 1000:
                self._close_utterance()

    async def control(self, command: sp.Commit | sp.Clear | sp.Configure) -> None:
        self.controls.append(command)
        if isinstance(command, sp.Commit):
            if self.speech_from is None:
                self._emit(self.machine.commit_empty())
            else:
                self._close_utterance()
        elif isinstance(command, sp.Clear) and self.speech_from is not None:
            self._emit(self.machine.speech_stopped(self.index, round(self.ms), False))
            self._emit(self.machine.cleared(self.index, self.seq))
            self.speech_from = None  # the index is used again by the next speech, as the segmenter's
        elif isinstance(command, sp.Configure):
            self.vad, self.format = command.vad, command.format or self.format

    def partial(self, text: str, *, candidate: bool = False) -> None:
        """A worker's partial (or candidate) for the open utterance."""
        self.seq += 1
        self._reply("candidate" if candidate else "partial", text)

    def _close_utterance(self) -> None:
        assert self.speech_from is not None
        start, end = self.speech_from / 1000, self.ms / 1000
        self._emit(self.machine.speech_stopped(self.index, round(self.ms), True))
        self.seq += 1
        self._emit(self.machine.queued(self.index, self.seq, start, end, 0.0))
        self._reply("final", self.conn.transcripts.popleft(), start=start, end=end)
        self.speech_from = None
        self.index += 1

    def _reply(self, kind: str, text: str, start: float = 0.0, end: float = 0.0) -> None:
        message = protocol.transcript(
            text,
            final=kind == "final",
            utterance_id=f"stream-{self.index}",
            language="en",
            source="live",
            start=start,
            end=end,
        )
        raw = {**message, "request_id": "stream", "index": self.index, "kind": kind, "seq": self.seq}
        self._emit(self.machine.result(WorkerReply.parse(raw), 0.0))

    def _emit(self, out: list[events.LiveEvent]) -> None:
        for event in out:
            self.conn.emit(event)


@dataclass
class FakeConnection:
    """What :class:`RealtimeProtocol` uses of :class:`gateway.connection.Connection`."""

    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, as Starlette's
    transcripts: deque[str] = field(default_factory=deque)
    settings: Settings = field(default_factory=Settings)
    sent: list[dict[str, Any]] = field(default_factory=list)
    recording: ScriptedRecording | None = None
    starts: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ws = FakeWebSocket(self.query, self.headers)
        self.handler = RealtimeProtocol(self)  # type: ignore[arg-type]

    @property
    def live_recording(self) -> ScriptedRecording | None:
        return self.recording if self.recording is not None and self.recording.live else None

    def emit(self, event: events.Event) -> None:
        self.sent.extend(self.handler.render(event))

    def push(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def error(self, code: Any, message: str, **fields: Any) -> None:
        self.emit(events.RequestError.of(code, message, **fields))

    async def start_recording(self, **options: Any) -> ScriptedRecording:
        self.starts.append(options)
        self.recording = ScriptedRecording(self, options["vad"], options["fmt"])
        return self.recording

    # --- what tests do --------------------------------------------------------------------

    async def open(self) -> list[dict[str, Any]]:
        await self.handler.opened()
        return self.take()

    async def send(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """One client event (as JSON text, the way it arrives); the server events it caused."""
        return await self.send_raw(json.dumps(event))

    async def send_raw(self, text: str) -> list[dict[str, Any]]:
        await self.handler.on_text(text)
        return self.take()

    async def append(self, audio: bytes, chunk: int = 4800) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for at in range(0, len(audio), chunk):
            b64 = base64.b64encode(audio[at : at + chunk]).decode()
            out += await self.send({"type": "input_audio_buffer.append", "audio": b64})
        return out

    def take(self) -> list[dict[str, Any]]:
        out, self.sent = self.sent, []
        return out


def speech(ms: int, bytes_per_ms_: int = 48) -> bytes:
    """``ms`` of "speech" for the script: any non-zero PCM."""
    return b"\x10\x01" * (ms * bytes_per_ms_ // 2)


def silence(ms: int, bytes_per_ms_: int = 48) -> bytes:
    return bytes(ms * bytes_per_ms_)
