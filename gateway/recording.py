"""A live recording on one browser connection: bytes go to the audio service over one
WebSocket per recording; partials and finals come back from the workers over pub/sub.

Finals reach the client in stream order (workers may finish them out of order), a
partial is shown only while its utterance has no final yet, and ``stop`` answers
``recording: false`` only after every final the audio service queued has been sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog
import websockets
from websockets.asyncio.client import ClientConnection

from gateway.context import GatewayContext
from shared import metrics, protocol
from shared.jobs import client_view, live_utterance_id
from shared.protocol import ErrorCode, ProtocolError

log = structlog.get_logger()

Emit = Callable[[dict[str, Any]], None]

#: Audio-service events a protocol adapter (``/v1/realtime``) may want beside the results.
STREAM_EVENTS = ("speech_started", "speech_stopped", "cleared", "commit_empty", "final_queued")


def stream_url(audio_service_url: str) -> str:
    return (
        audio_service_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/")
        + "/stream"
    )


class Recording:
    def __init__(
        self,
        ctx: GatewayContext,
        reply_channel: str,
        emit: Emit,
        *,
        language: str | None,
        task: str,
        model: str,
        fmt: str | None,
        options: dict[str, Any] | None = None,
        on_stream_event: Emit | None = None,
    ) -> None:
        """``options``: further stream settings (``prompt``, ``vad``, ``speech_events``; see
        :mod:`audio_service.streams`); ``on_stream_event`` receives the audio service's
        :data:`STREAM_EVENTS` as they come."""
        self.ctx = ctx
        self.reply_channel = reply_channel
        self.emit = emit
        self.on_stream_event = on_stream_event
        self.stream_id = uuid.uuid4().hex
        self.config = {
            "stream_id": self.stream_id,
            "reply_channel": reply_channel,
            "language": language,
            "task": task,
            "model": model,
            "format": fmt,
            **(options or {}),
        }
        self.model = model
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queued: dict[int, float] = {}  # final index -> time the audio service queued it
        self._final_seq: dict[int, int] = {}  # final index -> seq of the job that carries it
        self._candidates: dict[int, tuple[int, dict[str, Any]]] = {}  # index -> (seq, result)
        self._buffered: dict[int, dict[str, Any]] = {}
        self._next_final = 0
        self._partial_seq: dict[int, int] = {}
        self._stopping = False
        self._finals_expected: int | None = None
        self.ended = asyncio.Event()
        self._started_at = time.monotonic()
        self._first_partial_seen = False

    async def start(self) -> None:
        try:
            self._ws = await websockets.connect(
                stream_url(self.ctx.settings.audio_service_url), open_timeout=5, max_size=2**20
            )
            await self._ws.send(json.dumps(self.config))
            started = json.loads(await asyncio.wait_for(self._ws.recv(), 10))
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise ProtocolError(
                ErrorCode.AUDIO_SERVICE_UNAVAILABLE,
                f"The audio service is not reachable ({type(exc).__name__})",
            ) from exc
        if started.get("type") != "started":
            with contextlib.suppress(Exception):
                await self._ws.close()
            code = str(started.get("code") or "")  # e.g. ``busy``: the queue is full
            known = ErrorCode(code) if code in ErrorCode._value2member_map_ else ErrorCode.INTERNAL_ERROR
            raise ProtocolError(known, str(started.get("message", "stream refused")))
        self._reader = asyncio.create_task(self._read_audio_service())
        log.info("recording_started", stream_id=self.stream_id)

    async def feed(self, data: bytes) -> None:
        if self._ws is None or self._stopping:
            return
        with contextlib.suppress(websockets.WebSocketException):  # the reader reports a lost connection
            await self._ws.send(data)

    async def control(self, command: dict[str, Any]) -> None:
        """A mid-stream instruction (``commit``, ``clear``, ``configure``) for the audio
        service, applied there right behind the audio fed before it."""
        if self._ws is None or self._stopping:
            return
        with contextlib.suppress(websockets.WebSocketException):
            await self._ws.send(json.dumps(command))

    async def stop(self) -> None:
        """Flush: the audio service ends the open utterance and reports how many finals."""
        if self._stopping or self._ws is None:
            return
        self._stopping = True
        with contextlib.suppress(websockets.WebSocketException):
            await self._ws.send(json.dumps({"type": "stop"}))

    async def close(self) -> None:
        """The client has gone (or a new recording replaces this one): drop everything."""
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self.ended.set()

    # --- from the audio service -----------------------------------------------------------

    async def _read_audio_service(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                event = json.loads(raw)
                kind = event.get("type")
                if kind == "cleared":  # results for the dropped audio are void
                    index = int(event["index"])
                    self._partial_seq[index] = max(self._partial_seq.get(index, -1), int(event["seq"]))
                    self._candidates.pop(index, None)
                if kind in STREAM_EVENTS and self.on_stream_event is not None:
                    self.on_stream_event(event)
                if kind == "final_queued":
                    self._final_queued(int(event["index"]), int(event.get("seq", -1)))
                elif kind == "stopped":
                    self._finals_expected = int(event["finals"])
                    self._maybe_finish()
                    return
                elif kind == "error":
                    self.emit(
                        protocol.error(event.get("code", ErrorCode.INVALID_AUDIO), event.get("message", ""))
                    )
        except websockets.WebSocketException:
            pass
        if self._finals_expected is None:  # the audio service went away mid-stream
            self.emit(
                protocol.error(
                    ErrorCode.AUDIO_SERVICE_UNAVAILABLE,
                    "The audio service stopped during the recording; start again",
                )
            )
            self._end()

    # --- from the workers -------------------------------------------------------------------

    def _final_queued(self, index: int, seq: int) -> None:
        if index < self._next_final:
            return  # its result was faster than this notice
        self._queued[index] = time.monotonic()
        self._final_seq[index] = seq
        candidate = self._candidates.get(index)
        if candidate is not None and candidate[0] == seq:  # its result came before the confirmation
            self._settle(index, {**candidate[1], "final": True})

    def on_reply(self, reply: dict[str, Any]) -> bool:
        if reply.get("request_id") != self.stream_id:
            return False
        index = int(reply.get("index", 0))
        seq = int(reply.get("seq", 0))
        message = client_view(reply)
        enqueued_at = reply.get("enqueued_at")
        if isinstance(enqueued_at, int | float):
            message["latency_ms"] = max(0, round((time.time() - enqueued_at) * 1000))
        kind = reply.get("kind")
        if kind == "candidate":
            if self._final_seq.get(index) == seq:
                self._settle(index, {**message, "final": True})
                return True
            self._candidates[index] = (seq, message)
            kind = "partial"  # until its pause is confirmed it is the freshest partial
        if kind == "partial":
            if (
                index >= self._next_final
                and index not in self._buffered
                and seq > self._partial_seq.get(index, -1)
            ):
                self._partial_seq[index] = seq
                self._observe_first_partial()
                self.emit(message)
            return True
        self._settle(index, message)
        return True

    def _settle(self, index: int, message: dict[str, Any]) -> None:
        """A final (or an error in its place): send it once its predecessors are out."""
        if index < self._next_final or index in self._buffered:
            return
        self._buffered[index] = message
        while self._next_final in self._buffered:
            done = self._next_final
            self._observe_final(done)
            self.emit(self._buffered.pop(done))
            for table in (self._queued, self._final_seq, self._candidates, self._partial_seq):
                table.pop(done, None)
            self._next_final += 1
        self._maybe_finish()

    def _observe_first_partial(self) -> None:
        """How long a speaker waits before any text shows: the figure live users feel most."""
        if not self._first_partial_seen:
            self._first_partial_seen = True
            metrics.LIVE_FIRST_PARTIAL.observe(time.monotonic() - self._started_at)

    def _observe_final(self, index: int) -> None:
        """From the audio service closing the utterance to its final going out (0 when a
        confirmed candidate's result was already here)."""
        queued_at = self._queued.get(index)
        if queued_at is not None:
            metrics.LIVE_FINAL_LATENCY.observe(max(0.0, time.monotonic() - queued_at))

    def _maybe_finish(self) -> None:
        if self._finals_expected is not None and self._next_final >= self._finals_expected:
            self._end()

    def _end(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            self.emit(protocol.status("Recording stopped", recording=False, model=self.model))
            log.info("recording_stopped", stream_id=self.stream_id, finals=self._next_final)

    def expire(
        self,
        now: float,
        max_wait_s: float,
        code: ErrorCode = ErrorCode.TIMEOUT,
        message: str = "No result arrived in time",
    ) -> None:
        """A final queued long ago with no answer (its worker vanished) becomes an error,
        so a stop always completes. ``max_wait_s < 0`` fails every queued final now."""
        for index, queued_at in sorted(self._queued.items()):
            if index == self._next_final and now - queued_at > max_wait_s and index not in self._buffered:
                self._settle(
                    index,
                    protocol.error(code, message, utterance_id=live_utterance_id(self.stream_id, index)),
                )
