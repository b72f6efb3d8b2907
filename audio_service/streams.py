"""Live streams: the WebSocket ``/stream`` the gateway opens for each recording.

Internal protocol (gateway <-> audio service):

- gateway: first a JSON text frame ``{"stream_id", "reply_channel", "language", "task",
  "model", "format"}`` (optional: ``"prompt"``; ``"vad": {"threshold", "pause_s",
  "preroll_s"}`` with ``pause_s: null`` meaning utterances end only on ``commit``;
  ``"speech_events": true``); then binary frames, the next bytes of one encoded stream; then
  ``{"type": "stop"}``. A raw ``format`` (see :mod:`audio_service.pcm_input`) skips ffmpeg.
  Mid-stream, applied at their place in the audio: ``{"type": "commit"}`` (end the open
  utterance now), ``{"type": "clear"}`` (drop it unsent), ``{"type": "configure", ...}``
  (new ``language``/``model``/``prompt``/``vad``/``format`` for what follows).
- audio service: ``{"type": "started"}``; ``{"type": "final_queued", "utterance_id",
  "index", "seq", "start", "end"}`` for each finished utterance, ``seq`` naming the job
  whose result is its final (a confirmed candidate's, or a final job's);
  ``{"type": "stopped", "finals": N}`` once the stream is flushed; ``{"type": "error",
  "code", "message"}`` when the audio cannot be decoded. With ``speech_events``:
  ``{"type": "speech_started" | "speech_stopped", "index", "audio_ms", "kept"}`` (stream
  time in ms), ``{"type": "cleared", "index", "seq"}`` (results of that utterance up to
  ``seq`` are void) and ``{"type": "commit_empty"}`` (a commit found no speech).

The gateway's connection closing without ``stop`` means the client has gone: ffmpeg is
killed and the stream is marked cancelled so workers skip its queued jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from typing import Any

import numpy as np
import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from audio_service.decoder import SAMPLE_RATE
from audio_service.enqueue import JobQueue
from audio_service.pcm_input import RAW_FORMATS, PcmDecoder, StreamControl
from audio_service.segmenter import Event, Segmenter, SegmenterOptions, SpeechEvent, Utterance
from audio_service.stream_decoder import StreamDecoder
from shared import metrics
from shared.config import Settings
from shared.jobs import TranscriptionJob, live_utterance_id
from shared.protocol import loads_untrusted

log = structlog.get_logger()

CANCELLED_SEQ = 2**62
#: A partial not reported done after this long (expired, worker lost) no longer holds back the next.
PARTIAL_STALL_S = 5.0


class LiveStream:
    def __init__(self, ws: WebSocket, queue: JobQueue, settings: Settings, config: dict[str, Any]) -> None:
        self.ws = ws
        self.queue = queue
        self.settings = settings
        self.stream_id = str(config["stream_id"])
        self.reply_channel = str(config["reply_channel"])
        self.language = config.get("language")
        self.task = str(config.get("task") or "transcribe")
        self.model = str(config.get("model") or settings.model)
        self.format = config.get("format")
        self.prompt: str | None = config.get("prompt") or None
        self.speech_events = bool(config.get("speech_events"))
        self.segmenter = Segmenter(self._segmenter_options(config.get("vad")))
        self.seq = 0
        self.finals = 0
        self._candidate: tuple[int, int] | None = None  # (utterance index, job seq) awaiting its pause
        self._last_partial: tuple[int, float] = (0, 0.0)  # (job seq, when enqueued)
        self.samples = 0

    def _segmenter_options(self, vad: dict[str, Any] | None) -> SegmenterOptions:
        """The deployment's settings, overridden per stream by a client's turn detection."""
        options = SegmenterOptions(
            pause_s=self.settings.vad_pause_s,
            max_utterance_s=self.settings.max_utterance_s,
            partial_every_s=self.settings.partial_interval_s,
        )
        if not isinstance(vad, dict):
            return options
        threshold = float(vad.get("threshold") or options.threshold)
        pause = vad.get("pause_s", options.pause_s)
        return dataclasses.replace(
            options,
            threshold=threshold,
            neg_threshold=max(0.01, threshold - 0.15),  # Silero's own hysteresis
            pause_s=math.inf if pause is None else float(pause),
            preroll_s=float(vad.get("preroll_s", options.preroll_s)),
        )

    async def run(self) -> None:
        decoder: StreamDecoder | PcmDecoder
        if self.format in RAW_FORMATS:
            decoder = await PcmDecoder.start(str(self.format))
        else:
            decoder = await StreamDecoder.start(self.format)
        await self.ws.send_json({"type": "started"})
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
                await asyncio.to_thread(
                    self.queue.mark_stream, self.stream_id, latest=CANCELLED_SEQ, cancelled=1
                )
            await decoder.kill()
            metrics.ACTIVE_STREAMS.dec()
            log.info(
                "stream_ended",
                stream_id=self.stream_id,
                audio_s=round(self.samples / SAMPLE_RATE, 2),
                finals=self.finals,
                cancelled=not stopped_cleanly,
            )

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
                    command = loads_untrusted(message["text"])
                    kind = str(command.get("type"))
                except (ValueError, AttributeError):
                    continue
                if kind == "stop":
                    return True
                if kind in ("commit", "clear", "configure"):
                    control = StreamControl(kind, command)
                    if isinstance(decoder, PcmDecoder):
                        decoder.control(control)  # applied behind the audio already fed
                    else:
                        await self._control(control)  # ffmpeg holds no audio worth ordering against

    async def _control(self, control: StreamControl) -> None:
        if control.kind == "commit":
            events = self.segmenter.flush_events()
            if not any(isinstance(e, Utterance) for e in events):
                await self._send({"type": "commit_empty"})
            await self._dispatch(events)
        elif control.kind == "clear":
            stopped = self.segmenter.clear()
            if stopped is not None:
                await self._void(stopped.index)
        elif control.kind == "configure":
            settings = control.settings
            self.language = settings.get("language", self.language)
            self.model = str(settings.get("model") or self.model)
            self.prompt = settings.get("prompt", self.prompt) or None
            self.format = settings.get("format", self.format)
            if "vad" in settings:
                self.segmenter.options = self._segmenter_options(settings["vad"])

    async def _void(self, index: int) -> None:
        """A cleared utterance: skip its queued partial and candidate, tell the gateway."""
        fields: dict[str, int] = {"latest": self.seq + 1}
        if self._candidate is not None:
            fields[f"revoked:{self._candidate[1]}"] = 1
            self._candidate = None
        await asyncio.to_thread(self.queue.mark_stream, self.stream_id, **fields)
        await self._send({"type": "cleared", "index": index, "seq": self.seq})

    async def _pump_pcm(self, decoder: StreamDecoder | PcmDecoder) -> None:
        leftover = b""
        while chunk := await decoder.read():
            if isinstance(chunk, StreamControl):
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
                {
                    "type": "error",
                    "code": "invalid_audio",
                    "message": f"Could not decode the stream ({failure})",
                }
            )
        await self._dispatch(self.segmenter.flush_events())
        await self._send({"type": "stopped", "finals": self.finals})

    async def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, SpeechEvent):
                if self.speech_events:
                    await self._send(
                        {
                            "type": event.kind,
                            "index": event.index,
                            "audio_ms": event.sample * 1000 // SAMPLE_RATE,
                            "kept": event.kept,
                        }
                    )
            else:
                await self._dispatch_one(event)

    async def _dispatch_one(self, utterance: Utterance) -> None:
        """Partials are paced by the workers (a new one only when the last is done);
        a confirmed candidate becomes the final without a second job."""
        if utterance.kind == "partial" and not await self._partial_wanted():
            return
        revoke = self._candidate is not None and not utterance.confirms_candidate
        if utterance.final and utterance.confirms_candidate and self._candidate is not None:
            seq, self._candidate = self._candidate[1], None
        else:
            job = self._job(utterance)
            seq = job.seq
            fields = {
                "latest": seq,
                **({f"revoked:{self._candidate[1]}": 1} if revoke and self._candidate else {}),
            }

            def enqueue() -> None:
                self.queue.mark_stream(self.stream_id, **fields)
                self.queue.enqueue([job])

            await asyncio.to_thread(enqueue)
            if revoke:
                self._candidate = None
            if utterance.kind == "candidate":
                self._candidate = (utterance.index, seq)
            elif utterance.kind == "partial":
                self._last_partial = (seq, time.monotonic())
        if utterance.final:
            self.finals += 1
            metrics.UTTERANCES_CUT.labels(mode="live").inc()
            await self._send(
                {
                    "type": "final_queued",
                    "utterance_id": live_utterance_id(self.stream_id, utterance.index),
                    "index": utterance.index,
                    "seq": seq,
                    "start": utterance.start_s,
                    "end": utterance.end_s,
                }
            )

    async def _partial_wanted(self) -> bool:
        seq, at = self._last_partial
        if seq == 0 or time.monotonic() - at > PARTIAL_STALL_S:
            return True
        return await asyncio.to_thread(self.queue.partials_done, self.stream_id) >= seq

    def _job(self, utterance: Utterance) -> TranscriptionJob:
        self.seq += 1
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
        )

    async def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send_json(message)


async def stream_endpoint(ws: WebSocket) -> None:
    await ws.accept()
    state = ws.app.state
    try:
        config = await ws.receive_json()
        if not isinstance(config, dict) or "stream_id" not in config or "reply_channel" not in config:
            raise ValueError
    except Exception:
        await ws.send_json(
            {"type": "error", "code": "invalid_message", "message": "Bad stream configuration"}
        )
        await ws.close(1008)
        return
    limit = state.settings.max_queue_length
    if limit > 0 and (waiting := await asyncio.to_thread(state.queue.length)) >= limit:
        # Same back-pressure as for files: refuse a new stream rather than queue without bound.
        message = f"The transcription queue is full ({waiting} jobs waiting); try again shortly"
        await ws.send_json({"type": "error", "code": "busy", "message": message})
        await ws.close(1013)
        return
    await LiveStream(ws, state.queue, state.settings, config).run()
    with contextlib.suppress(Exception):
        await ws.close()
