"""A live recording: bytes go to the audio service over one WebSocket per recording
(:mod:`shared.stream_protocol`); results come back from the workers over pub/sub, on a
reply channel of the recording's own (so that it can outlive the client connection it
started on, see :mod:`gateway.live_sessions`). Both feed :class:`gateway.utterances.UtteranceMachine`, which
decides what the client sees; its typed events go to ``emit``, to be rendered in the
client's protocol. This class only does the I/O and the metrics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence

import numpy as np
import structlog
import websockets
from websockets.asyncio.client import ClientConnection

from gateway import events
from gateway.context import GatewayContext
from gateway.utterances import UtteranceMachine
from gateway.worker_reply import WorkerReply
from shared import metrics
from shared import stream_protocol as sp
from shared.errors import parse_code
from shared.jobs import live_utterance_id
from shared.protocol import ErrorCode, ProtocolError
from shared.redis_keys import new_reply_channel
from shared.speakers import wire
from shared.speakers.online import SessionSpeakers

log = structlog.get_logger()

Emit = Callable[[events.LiveEvent], None]

WATCHDOG_INTERVAL_S = 2.0


def stream_url(audio_service_url: str) -> str:
    return (
        audio_service_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/")
        + "/stream"
    )


class Recording:
    def __init__(
        self,
        ctx: GatewayContext,
        emit: Emit,
        *,
        language: str | None,
        task: str,
        model: str,
        fmt: str | None,
        prompt: str | None = None,
        vad: sp.VadSettings | None = None,
        speech_events: bool = False,
        diarize: bool = False,
        known_speakers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self.ctx = ctx
        self.emit = emit
        self.stream_id = uuid.uuid4().hex
        self.reply_channel = new_reply_channel()
        self.bytes_fed = 0  # of the client's encoded stream: where a resumed client goes on
        self.config = sp.StreamConfig(
            stream_id=self.stream_id,
            reply_channel=self.reply_channel,
            language=language,
            task=task,
            model=model,
            format=fmt,
            prompt=prompt,
            vad=vad,
            speech_events=speech_events,
            diarize=diarize,
            speaker_references=[base64.b64encode(clip).decode() for _, clip in known_speakers]
            if diarize
            else [],
        )
        #: The session's voices (speaker labels asked for), and each answered final's voice
        #: windows until it is released in order and labelled. Known speakers' embeddings
        #: come with the first final's reply (the audio service puts their clips on it).
        self.speakers = SessionSpeakers() if diarize else None
        self._known_names = [name for name, _ in known_speakers]
        self._voice_windows: dict[int, np.ndarray] = {}
        self.model = model
        self.machine = UtteranceMachine(
            self.stream_id, model, lambda index: live_utterance_id(self.stream_id, index)
        )
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self.ended = asyncio.Event()
        self._started_at = time.monotonic()
        self._first_partial_seen = False
        self.audio_s = 0.0  # stream time up to the end of the last utterance closed

    async def start(self) -> None:
        await self.ctx.router.register(self.reply_channel, self.on_reply)
        try:
            self._ws = await websockets.connect(
                stream_url(self.ctx.settings.audio_service_url), open_timeout=5, max_size=2**20
            )
            await self._ws.send(self.config.to_json())
            started = sp.parse_event(await asyncio.wait_for(self._ws.recv(), 10))
        except (OSError, TimeoutError, websockets.WebSocketException, sp.StreamProtocolError) as exc:
            await self.ctx.router.unregister(self.reply_channel)
            raise ProtocolError(
                ErrorCode.AUDIO_SERVICE_UNAVAILABLE,
                f"The audio service is not reachable ({type(exc).__name__})",
            ) from exc
        if not isinstance(started, sp.Started):
            await self.ctx.router.unregister(self.reply_channel)
            with contextlib.suppress(Exception):
                await self._ws.close()
            if isinstance(started, sp.StreamError):  # e.g. ``busy``: the queue is full
                raise ProtocolError(parse_code(started.code), started.message or "stream refused")
            raise ProtocolError(ErrorCode.INTERNAL_ERROR, "stream refused")
        self._reader = asyncio.create_task(self._read_audio_service())
        self._watchdog = asyncio.create_task(self._watch())
        log.info("recording_started", stream_id=self.stream_id)

    @property
    def live(self) -> bool:
        return not self.ended.is_set()

    async def feed(self, data: bytes) -> None:
        if self._ws is None or self._stopping:
            return
        with contextlib.suppress(websockets.WebSocketException):  # the reader reports a lost connection
            await self._ws.send(data)
            self.bytes_fed += len(data)

    async def control(self, command: sp.Commit | sp.Clear | sp.Configure) -> None:
        """A mid-stream instruction for the audio service, applied there right behind the
        audio fed before it."""
        if self._ws is None or self._stopping:
            return
        if isinstance(command, sp.Configure) and command.model:
            self.model = command.model
        with contextlib.suppress(websockets.WebSocketException):
            await self._ws.send(command.to_json())

    async def stop(self) -> None:
        """Flush: the audio service ends the open utterance and reports how many finals."""
        if self._stopping or self._ws is None:
            return
        self._stopping = True
        with contextlib.suppress(websockets.WebSocketException):
            await self._ws.send(sp.Stop().to_json())

    async def close(self) -> None:
        """Nobody will take the results any more: drop everything."""
        await self.ctx.router.unregister(self.reply_channel)
        for task in (self._reader, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self.ended.set()

    # --- inputs ---------------------------------------------------------------------------

    async def _read_audio_service(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                try:
                    event = sp.parse_event(raw)
                except sp.StreamProtocolError:
                    log.warning("stream_event_unreadable")
                    continue
                self._emit(self._audio_event(event))
                if isinstance(event, sp.Stopped):
                    return
        except websockets.WebSocketException:
            pass
        self._emit(self.machine.lost())

    def _audio_event(self, event: sp.StreamEvent) -> list[events.LiveEvent]:
        m, now = self.machine, time.monotonic()
        match event:
            case sp.FinalQueued():
                self.audio_s = max(self.audio_s, event.end)
                return m.queued(event.index, event.seq, event.start, event.end, now)
            case sp.Stopped():
                return m.stopped(event.finals, now)
            case sp.StreamError():
                return m.stream_error(event.code or ErrorCode.INVALID_AUDIO, event.message)
            case sp.SpeechStarted():
                return m.speech_started(event.index, event.audio_ms)
            case sp.SpeechStopped():
                return m.speech_stopped(event.index, event.audio_ms, event.kept)
            case sp.Cleared():
                return m.cleared(event.index, event.seq)
            case sp.CommitEmpty():
                return m.commit_empty()
            case sp.PartialsPaused():
                return [events.PartialsPaused()]
            case sp.PartialsResumed():
                return [events.PartialsResumed()]
        return []

    def on_reply(self, raw: dict[str, object]) -> None:
        """A worker reply on this recording's channel."""
        if raw.get("request_id") != self.stream_id:
            return
        reply = WorkerReply.parse(dict(raw))
        if self.speakers is not None and reply.kind != "partial" and reply.speakers is not None:
            with contextlib.suppress(ValueError):  # malformed: the final goes out unlabelled
                self._voice_windows[reply.index] = wire.load_windows(reply.speakers).embeddings
                refs = wire.load_references(reply.speakers)
                if refs is not None and len(refs) == len(self._known_names):
                    self.speakers.know(dict(zip(self._known_names, refs, strict=True)))
        self._emit(self.machine.result(reply, time.monotonic(), latency_now=time.time()))

    def _label(self, event: events.LiveEvent) -> events.LiveEvent:
        """A final released in order gets its voice's label (decided now, never changed)."""
        if self.speakers is None or not isinstance(event, events.FinalText):
            return event
        windows = self._voice_windows.pop(event.index, None)
        label = self.speakers.assign(windows) if windows is not None else None
        if label is None:
            return event
        return dataclasses.replace(event, message={**event.message, "speaker": label})

    async def _watch(self) -> None:
        """The stuck-final watchdog, kept by the recording itself so that it also runs while
        the recording is parked (its client gone, within the resume window): a final no
        answer reaches in ``S2T_JOB_TTL_S + S2T_JOB_TIMEOUT_S`` fails with ``timeout``."""
        max_wait = self.ctx.settings.job_ttl_s + self.ctx.settings.job_timeout_s
        while self.live:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            self.expire(time.monotonic(), max_wait)

    def expire(
        self,
        now: float,
        max_wait_s: float,
        code: ErrorCode = ErrorCode.TIMEOUT,
        message: str = "No result arrived in time",
    ) -> None:
        """See :meth:`UtteranceMachine.expire`."""
        self._emit(self.machine.expire(now, max_wait_s, code, message))

    def lag(self, now: float) -> float:
        """See :meth:`UtteranceMachine.lag`."""
        return self.machine.lag(now)

    def pace(self, now: float) -> float:
        """Stream seconds per wall second so far: about 1 for a client sending in real time."""
        return self.audio_s / max(now - self._started_at, 1.0)

    async def abandon(self, code: ErrorCode, message: str) -> None:
        """End the recording with an error (see :meth:`UtteranceMachine.abandon`) and
        cancel its audio-service stream, so that its queued jobs are skipped."""
        self._emit(self.machine.abandon(time.monotonic(), code, message))
        await self.close()

    # --- outputs --------------------------------------------------------------------------

    def _emit(self, out: list[events.LiveEvent]) -> None:
        for event in map(self._label, out):
            self._observe(event)
            self.emit(event)

    def _observe(self, event: events.LiveEvent) -> None:
        match event:
            case events.PartialText() if not self._first_partial_seen:
                # How long a speaker waits before any text shows: what live users feel most.
                self._first_partial_seen = True
                metrics.LIVE_FIRST_PARTIAL.observe(time.monotonic() - self._started_at)
            case events.FinalText(waited_s=waited) | events.UtteranceFailed(waited_s=waited) if (
                waited is not None
            ):
                # From the audio service closing the utterance to its answer going out, as
                # before the state machine: errors in a final's place count too.
                metrics.LIVE_FINAL_LATENCY.observe(waited)
            case events.RecordingStopped():
                self.ended.set()
                log.info("recording_stopped", stream_id=self.stream_id, finals=event.finals)
