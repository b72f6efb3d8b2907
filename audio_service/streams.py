"""Live streams: the WebSocket ``/stream`` the gateway opens for each recording.

The messages both ways are the typed ones of :mod:`shared.stream_protocol` (parsed and
built there, so the two services agree on every field). A raw ``format`` (see
:mod:`shared.audio_format`) skips ffmpeg. ``commit``, ``clear`` and ``configure`` take
effect at their place in the audio.

Which queued jobs of the stream the workers still want is kept in its
:class:`~shared.stream_ledger.StreamLedger`: each job queued supersedes older partials,
a candidate is revoked when speech resumes, and the gateway's connection closing without
``stop`` (the client has gone) kills ffmpeg and cancels the stream, so workers skip its
queued jobs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import math
import time

import numpy as np
import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from audio_service.decoder import DecodeError
from audio_service.pacer import Load, PacerOptions, PartialPacer
from audio_service.pcm_input import PcmDecoder, StreamControl
from audio_service.references import decode_references
from audio_service.segmenter import Event, Segmenter, SegmenterOptions, SpeechEvent, Utterance
from audio_service.stream_decoder import StreamDecoder
from shared import metrics
from shared.audio_format import SAMPLE_RATE, is_raw_format
from shared.config import Settings
from shared.errors import ErrorCode
from shared.jobs import TranscriptionJob, live_utterance_id
from shared.queue import REDIS_AWAY, JobQueue, queue_depths
from shared.redis_keys import QUEUE_FINAL, QUEUE_PARTIAL
from shared.stream_ledger import Progress, StreamLedger
from shared.stream_protocol import (
    Clear,
    Cleared,
    Commit,
    CommitEmpty,
    Configure,
    FinalQueued,
    PartialsPaused,
    PartialsResumed,
    SpeechStarted,
    SpeechStopped,
    Started,
    Stop,
    Stopped,
    StreamConfig,
    StreamError,
    StreamEvent,
    StreamProtocolError,
    VadSettings,
    parse_config,
    parse_control,
)

log = structlog.get_logger()

#: A partial (or candidate) not reported done after this long (expired, worker lost, the
#: reaper gave up) no longer holds back the next partial.
PARTIAL_STALL_S = 5.0


class LiveStream:
    def __init__(
        self,
        ws: WebSocket,
        queue: JobQueue,
        ledger: StreamLedger,
        settings: Settings,
        config: StreamConfig,
        speaker_references: list[bytes] | None = None,
    ) -> None:
        self.ws = ws
        self.queue = queue
        self.ledger = ledger
        self.settings = settings
        self.stream_id = config.stream_id
        self.reply_channel = config.reply_channel
        self.language = config.language
        self.task = config.task or "transcribe"
        self.model = config.model or settings.model
        self.format = config.format
        self.prompt = config.prompt or None
        self.diarize = config.diarize
        #: Known speakers' clips (int16 PCM): they ride on every diarized job until the
        #: stream's first final is queued, so the worker that answers the first final also
        #: returns their embeddings, whichever candidate before it was revoked.
        self.speaker_references = speaker_references or []
        self.speech_events = config.speech_events
        self.segmenter = Segmenter(self._segmenter_options(config.vad))
        self.seq = 0
        self.finals = 0
        self._candidate: tuple[int, int] | None = None  # (utterance index, job seq) awaiting its pause
        self._candidate_at = 0.0  # when that candidate was queued
        self._last_partial: tuple[int, float] = (0, 0.0)  # (job seq, when enqueued)
        self._partial_sent: tuple[int, float] = (-1, 0.0)  # (utterance index, its audio seconds)
        self._wait_seen = 0  # seq of the answered partial whose queue wait the pacer last took
        self.pacer = PartialPacer(
            PacerOptions(
                interval_s=settings.partial_interval_s,
                max_interval_s=settings.partial_max_interval_s,
                busy_wait_s=settings.partial_busy_wait_s,
                pause_wait_s=settings.partial_pause_wait_s,
                resume_s=settings.partial_resume_s,
            )
        )
        self.samples = 0

    def _segmenter_options(self, vad: VadSettings | None) -> SegmenterOptions:
        """The deployment's settings, overridden per stream by a client's turn detection.
        ``pause_s`` given as None: only ``commit`` ends an utterance; left out: the default."""
        options = SegmenterOptions(
            pause_s=self.settings.vad_pause_s,
            max_utterance_s=self.settings.max_utterance_s,
            partial_every_s=self.settings.partial_interval_s,
            first_partial_s=self.settings.first_partial_s,
        )
        if vad is None:
            return options
        threshold = vad.threshold or options.threshold
        pause = vad.pause_s if "pause_s" in vad.model_fields_set else options.pause_s
        return dataclasses.replace(
            options,
            threshold=threshold,
            neg_threshold=max(0.01, threshold - 0.15),  # Silero's own hysteresis
            pause_s=math.inf if pause is None else float(pause),
            preroll_s=vad.preroll_s if vad.preroll_s is not None else options.preroll_s,
        )

    async def run(self) -> None:
        decoder: StreamDecoder | PcmDecoder
        if is_raw_format(self.format):
            decoder = await PcmDecoder.start(str(self.format))
        else:
            decoder = await StreamDecoder.start(self.format)
        await self.ws.send_text(Started().to_json())
        structlog.contextvars.bind_contextvars(request_id=self.stream_id)  # this stream's task only
        metrics.ACTIVE_STREAMS.inc()
        log.info("stream_started", stream_id=self.stream_id, format=self.format)
        pump = asyncio.create_task(self._pump_pcm(decoder))
        stopped_cleanly = False
        try:
            stopped_cleanly = await self._receive(decoder)
            if stopped_cleanly:
                decoder.end_input()
                await pump
        finally:
            if not stopped_cleanly:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
                await asyncio.to_thread(self._cancel)
            await decoder.kill()
            metrics.ACTIVE_STREAMS.dec()
            log.info(
                "stream_ended",
                stream_id=self.stream_id,
                audio_s=round(self.samples / SAMPLE_RATE, 2),
                finals=self.finals,
                cancelled=not stopped_cleanly,
            )

    def _cancel(self) -> None:
        """The client has gone: workers skip the stream's queued jobs, and none is queued
        again after a Redis restart."""
        if (buffer := self.queue.buffer) is not None:
            buffer.forget_stream(self.stream_id)
        if self.queue.redis_away:
            return  # a Redis that comes back empty holds none of its jobs anyway
        with contextlib.suppress(*REDIS_AWAY):
            self.ledger.cancel(self.stream_id)

    def _supersede(self, seq: int, revoke: int | None) -> None:
        """Older partials (and the revoked candidate) are skipped. While Redis is away the
        ledger cannot be written; the revoked candidate is at least not queued again."""
        if revoke is not None and (buffer := self.queue.buffer) is not None:
            buffer.forget_job(self.stream_id, revoke)
        if self.queue.redis_away:
            return
        with contextlib.suppress(*REDIS_AWAY):
            self.ledger.supersede(self.stream_id, seq, revoke=revoke)

    async def _receive(self, decoder: StreamDecoder | PcmDecoder) -> bool:
        """Forward bytes to the decoder until ``stop`` (True) or the gateway goes away (False)."""
        while True:
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return False
            if message["type"] == "websocket.disconnect":
                return False
            if message.get("bytes"):
                if not await decoder.feed(message["bytes"]):
                    return True  # ffmpeg gave up on the input; the pump reports why
            elif message.get("text"):
                try:
                    command = parse_control(message["text"])
                except StreamProtocolError:
                    continue  # not a control of this protocol: ignored, as any unknown one
                if isinstance(command, Stop):
                    return True
                if isinstance(decoder, PcmDecoder):
                    decoder.control(command)  # applied behind the audio already fed
                else:
                    await self._control(command)  # ffmpeg holds no audio worth ordering against

    async def _control(self, control: StreamControl) -> None:
        if isinstance(control, Commit):
            events = self.segmenter.commit_events()
            if not any(isinstance(e, Utterance) for e in events):
                await self._send(CommitEmpty())
            await self._dispatch(events)
        elif isinstance(control, Clear):
            stopped = self.segmenter.clear()
            if stopped is not None:
                await self._void(stopped.index)
        elif isinstance(control, Configure):
            self._configure(control)

    def _configure(self, control: Configure) -> None:
        """Only what the gateway set changes; an empty ``model`` keeps the current one."""
        changed = control.changes()
        if "language" in changed:
            self.language = control.language
        if control.model:
            self.model = control.model
        if "prompt" in changed:
            self.prompt = control.prompt or None
        if "format" in changed:
            self.format = control.format
        if "vad" in changed:
            self.segmenter.options = self._segmenter_options(control.vad)

    async def _void(self, index: int) -> None:
        """A cleared utterance: skip its queued partial and candidate, tell the gateway."""
        revoke = self._candidate[1] if self._candidate is not None else None
        await asyncio.to_thread(self._supersede, self.seq + 1, revoke)
        self._candidate = None
        await self._send(Cleared(index=index, seq=self.seq))

    async def _pump_pcm(self, decoder: StreamDecoder | PcmDecoder) -> None:
        leftover = b""
        while chunk := await decoder.read():
            if not isinstance(chunk, bytes):
                await self._control(chunk)
                continue
            data = leftover + chunk
            cut = len(data) - len(data) % 2
            leftover = data[cut:]
            pcm = np.frombuffer(data[:cut], dtype="<i2")
            self.samples += len(pcm)
            metrics.AUDIO_DECODED.labels(mode="live").inc(len(pcm) / SAMPLE_RATE)
            await self._dispatch(self.segmenter.feed_events(pcm))
        failure = await decoder.failure()
        if failure and self.samples == 0:
            await self._send(
                StreamError(code="invalid_audio", message=f"Could not decode the stream ({failure})")
            )
        await self._dispatch(self.segmenter.flush_events())
        await self._send(Stopped(finals=self.finals))

    async def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, SpeechEvent):
                if self.speech_events:
                    kind = SpeechStarted if event.kind == "speech_started" else SpeechStopped
                    audio_ms = event.sample * 1000 // SAMPLE_RATE
                    await self._send(kind(index=event.index, audio_ms=audio_ms, kept=event.kept))
            else:
                await self._dispatch_one(event)

    async def _dispatch_one(self, utterance: Utterance) -> None:
        """Partials are paced by the workers (a new one only when the last is done) and by
        the pool's load (:meth:`_partial_wanted`); a confirmed candidate becomes the final
        without a second job."""
        if utterance.kind == "partial" and not await self._partial_wanted(utterance):
            return
        revoke = self._candidate is not None and not utterance.confirms_candidate
        if utterance.final and utterance.confirms_candidate and self._candidate is not None:
            seq, self._candidate = self._candidate[1], None
        else:
            job = self._job(utterance)
            seq = job.seq
            revoked = self._candidate[1] if revoke and self._candidate else None

            def enqueue() -> None:
                self._supersede(seq, revoked)
                try:
                    self.queue.enqueue([job])  # a final waits in the requeue buffer while Redis is away
                except REDIS_AWAY:
                    log.info("partial_dropped_redis_away", seq=seq)  # the next one replaces it

            await asyncio.to_thread(enqueue)
            if revoke:
                self._candidate = None
            if utterance.kind == "candidate":
                self._candidate, self._candidate_at = (utterance.index, seq), time.monotonic()
            elif utterance.kind == "partial":
                self._last_partial = (seq, time.monotonic())
                self._partial_sent = (utterance.index, utterance.end_s - utterance.start_s)
        if utterance.final:
            self.finals += 1
            metrics.UTTERANCES_CUT.labels(mode="live").inc()
            await self._send(
                FinalQueued(
                    utterance_id=live_utterance_id(self.stream_id, utterance.index),
                    index=utterance.index,
                    seq=seq,
                    start=utterance.start_s,
                    end=utterance.end_s,
                )
            )

    async def _partial_wanted(self, utterance: Utterance) -> bool:
        """Whether the partial the segmenter offers goes out: not while the last one is not
        done, nor while this utterance's candidate final is in flight (its answer shows in
        the partial's place), nor when the pacer (:mod:`audio_service.pacer`) holds it."""
        if self.queue.redis_away:
            return False  # none could be queued now
        now = time.monotonic()
        mine = self._candidate is not None and self._candidate[0] == utterance.index
        candidate = self._candidate[1] if self._candidate is not None and mine else None
        try:
            progress, depths = await asyncio.to_thread(self._load, candidate)
        except REDIS_AWAY:
            return False  # none could be queued now
        fresh = progress.partials_done > self._wait_seen and progress.partials_done == self._last_partial[0]
        if fresh:
            self._wait_seen = progress.partials_done
        load = Load(
            depths.get(QUEUE_FINAL, 0),
            depths.get(QUEUE_PARTIAL, 0),
            progress.partial_wait_s if fresh else None,
        )
        if (change := self.pacer.observe(load, now)) is not None:
            metrics.LIVE_PARTIAL_PACING.labels(change=change).inc()
            log.info("partials_" + change, stream_id=self.stream_id, **dataclasses.asdict(load))
            await self._send(PartialsPaused() if change == "paused" else PartialsResumed())
        seq, at = self._last_partial
        index, audio_s = self._partial_sent
        reason = None
        # A partial of an earlier utterance still in flight holds back only its own
        # utterance's: this one's first words must not wait for text already replaced.
        if seq and index == utterance.index and progress.partials_done < seq and now - at <= PARTIAL_STALL_S:
            reason = "pending"
        elif not progress.candidate_done and now - self._candidate_at <= PARTIAL_STALL_S:
            reason = "candidate"
        else:
            since = utterance.end_s - utterance.start_s - audio_s if index == utterance.index else None
            if not self.pacer.due(since):
                reason = "paused" if self.pacer.paused else "thinned"
        if reason is not None:
            metrics.LIVE_PARTIALS_HELD.labels(reason=reason).inc()
        return reason is None

    def _load(self, candidate: int | None) -> tuple[Progress, dict[str, int]]:
        return self.ledger.progress(self.stream_id, candidate), queue_depths(self.queue.redis)

    def _job(self, utterance: Utterance) -> TranscriptionJob:
        self.seq += 1
        diarized = self.diarize and utterance.kind != "partial"  # a candidate may be the final
        return TranscriptionJob(
            utterance_id=live_utterance_id(self.stream_id, utterance.index),
            reply_channel=self.reply_channel,
            pcm=utterance.audio.astype("<i2").tobytes(),
            model=self.model,
            language=self.language,
            task=self.task,
            source="real_microphone",
            kind=utterance.kind,
            request_id=self.stream_id,
            index=utterance.index,
            count=0,
            offset_s=utterance.start_s,
            prompt=self.prompt,
            stream_id=self.stream_id,
            seq=self.seq,
            diarize=diarized,
            speaker_references=self.speaker_references if diarized and self.finals == 0 else [],
        )

    async def _send(self, event: StreamEvent) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send_text(event.to_json())


async def stream_endpoint(ws: WebSocket) -> None:
    await ws.accept()
    state = ws.app.state
    try:
        config = parse_config(await ws.receive_text())
    except Exception:
        await ws.send_text(StreamError(code="invalid_message", message="Bad stream configuration").to_json())
        await ws.close(1008)
        return
    try:
        encoded = config.speaker_references if config.diarize else []
        known = await decode_references([base64.b64decode(c, validate=True) for c in encoded])
    except (binascii.Error, ValueError, DecodeError) as exc:
        message = exc.message if isinstance(exc, DecodeError) else "speaker_references must be base64"
        await ws.send_text(StreamError(code=ErrorCode.INVALID_SPEAKER_REFERENCE, message=message).to_json())
        await ws.close(1008)
        return
    limit = state.settings.max_queue_length
    try:
        waiting = await asyncio.to_thread(state.queue.length)
    except REDIS_AWAY:
        waiting = 0  # Redis is away: the stream's finals wait in the requeue buffer
    if limit > 0 and waiting >= limit:
        # Same back-pressure as for files: refuse a new stream rather than queue without bound.
        message = f"The transcription queue is full ({waiting} jobs waiting); try again shortly"
        await ws.send_text(StreamError(code="busy", message=message).to_json())
        await ws.close(1013)
        return
    await LiveStream(ws, state.queue, state.ledger, state.settings, config, known).run()
    with contextlib.suppress(Exception):
        await ws.close()
