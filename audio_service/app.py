"""The audio service's HTTP face: ``POST /decode`` takes a whole file from the gateway,
decodes and splits it, and enqueues one job per piece; ``GET /health``.

The body is msgpack (binary audio plus routing fields) because base64 in JSON would
add a third to every upload on the internal hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import structlog
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from audio_service.decoder import DecodeError, decode, refill_spare
from audio_service.reaper import reap_forever
from audio_service.references import decode_references
from audio_service.splitter import split
from audio_service.streams import stream_endpoint
from shared import codec, metrics
from shared.audio_format import SAMPLE_RATE
from shared.config import Settings, get_settings
from shared.errors import ErrorCode, http_status, parse_code
from shared.jobs import TranscriptionJob
from shared.queue import REDIS_AWAY, JobQueue
from shared.requeue import RequeueBuffer
from shared.stream_ledger import StreamLedger

log = structlog.get_logger()


def _error(code: ErrorCode, message: str) -> JSONResponse:
    """The status comes from the service's error table, so the gateway and this hop agree."""
    return JSONResponse({"code": code, "message": message}, status_code=http_status(code))


def _decode_hints(req: dict[str, Any]) -> dict[str, Any]:
    """Options the gateway passes through to the model untouched (OpenAI's ``prompt``,
    ``temperature``, word timestamps); anything of the wrong type is left out."""
    hints: dict[str, Any] = {}
    if isinstance(req.get("prompt"), str) and req["prompt"]:
        hints["prompt"] = req["prompt"]
    if isinstance(req.get("temperature"), int | float) and not isinstance(req["temperature"], bool):
        hints["temperature"] = float(req["temperature"])
    for flag in ("word_timestamps", "trim_segments", "timestamps", "diarize"):
        if isinstance(req.get(flag), bool):
            hints[flag] = req[flag]
    return hints


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    queue = JobQueue(settings, buffer=RequeueBuffer.for_settings(settings))
    ledger = StreamLedger.for_settings(queue.redis, settings)
    started = time.time()

    async def decode_file(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > settings.max_audio_bytes + 64 * 1024:
            return _error(ErrorCode.AUDIO_TOO_LARGE, "Request body over the audio limit")
        try:
            req: dict[str, Any] = codec.loads(body)
            audio = req["audio"]
            reply_channel = req["reply_channel"]
            if not isinstance(audio, bytes) or not isinstance(reply_channel, str):
                raise TypeError
        except Exception:
            return _error(ErrorCode.INVALID_MESSAGE, "Body must be msgpack with 'audio' and 'reply_channel'")
        request_id = str(req.get("request_id") or uuid.uuid4().hex)
        structlog.contextvars.bind_contextvars(request_id=request_id)  # this request's task only
        try:
            waiting: int | None = await asyncio.to_thread(queue.length)
        except REDIS_AWAY:
            waiting = None  # Redis is away: the requeue buffer takes the pieces, if it has room
        if waiting is not None and settings.max_queue_length > 0 and waiting >= settings.max_queue_length:
            # Back-pressure rather than an unbounded queue: the client may retry shortly.
            log.warning("queue_full", request_id=request_id, waiting=waiting)
            message = f"The transcription queue is full ({waiting} jobs waiting); try again shortly"
            return _error(ErrorCode.BUSY, message)
        log.info("audio_processing_started", request_id=request_id, bytes=len(audio))
        t0 = time.perf_counter()
        try:
            decoded = await decode(audio, max_seconds=settings.max_audio_seconds)
        except DecodeError as exc:
            log.info("audio_rejected", request_id=request_id, code=exc.code)
            rejected = _error(parse_code(exc.code, ErrorCode.INVALID_AUDIO), exc.message)
            rejected.background = BackgroundTask(refill_spare)
            return rejected
        decode_s = time.perf_counter() - t0
        metrics.DECODE_DURATION.observe(decode_s)
        metrics.AUDIO_DECODED.labels(mode="file").inc(decoded.duration_s)
        pcm = decoded.pcm
        hints = _decode_hints(req)
        try:
            wanted = req.get("speaker_references") if hints.get("diarize") else None
            known_clips = await decode_references(wanted)
        except DecodeError as exc:
            log.info("speaker_reference_rejected", request_id=request_id)
            return _error(parse_code(exc.code, ErrorCode.INVALID_SPEAKER_REFERENCE), exc.message)
        # Subtitle-grade times: the worker snaps segments to the speech found here (word
        # timings, when asked for, place them on the words instead).
        with_speech = bool(hints.get("trim_segments")) and not hints.get("word_timestamps")
        pieces = await asyncio.to_thread(
            split, decoded.as_float32(), settings.max_piece_seconds, with_speech=with_speech
        )
        jobs = [
            TranscriptionJob(
                utterance_id=f"{request_id}-{p.index}" if len(pieces) > 1 else request_id,
                reply_channel=reply_channel,
                pcm=pcm[p.start * 2 : p.end * 2],
                model=str(req.get("model") or settings.model),
                language=req.get("language"),
                task=str(req.get("task") or "transcribe"),
                source=str(req.get("source") or "upload"),
                request_id=request_id,
                index=p.index,
                count=len(pieces),
                offset_s=p.start_s,
                speech_spans=p.speech_spans_s(),
                speaker_references=known_clips if p.index == 0 else [],
                **hints,
            )
            for p in pieces
        ]
        if waiting is None and not queue.buffer_has_room(jobs):
            log.warning("redis_away_buffer_full", request_id=request_id, pieces=len(jobs))
            message = "Redis is unavailable and the requeue buffer is full; try again shortly"
            return _error(ErrorCode.REDIS_UNAVAILABLE, message)
        if jobs:
            await asyncio.to_thread(queue.enqueue, jobs)
            metrics.UTTERANCES_CUT.labels(mode="file").inc(len(jobs))
        log.info(
            "audio_enqueued",
            request_id=request_id,
            duration_s=round(decoded.duration_s, 3),
            pieces=len(jobs),
            decode_ms=round(decode_s * 1000, 1),
        )
        return JSONResponse(
            {
                "request_id": request_id,
                "duration_s": decoded.duration_s,
                "pieces": [
                    {
                        "utterance_id": j.utterance_id,
                        "index": j.index,
                        "start": j.offset_s,
                        "end": j.offset_s + j.duration_s,
                    }
                    for j in jobs
                ],
            },
            # The next file's ffmpeg starts once this answer is on its way.
            background=BackgroundTask(refill_spare),
        )

    async def health(_: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "ok", "uptime": round(time.time() - started, 1), "sample_rate": SAMPLE_RATE}
        )

    async def metrics_endpoint(_: Request) -> Response:
        body, content_type = metrics.exposition(metrics.AUDIO_REGISTRY)
        return Response(body, media_type=content_type)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Load the VAD model now, not inside the first user's request.
        await asyncio.to_thread(split, np.zeros(SAMPLE_RATE, dtype=np.float32), settings.max_piece_seconds)
        stop = threading.Event()
        reaper = threading.Thread(target=reap_forever, args=(queue, ledger, stop), daemon=True, name="reaper")
        reaper.start()
        try:
            yield
        finally:
            stop.set()

    app = Starlette(
        routes=[
            Route("/decode", decode_file, methods=["POST"]),
            WebSocketRoute("/stream", stream_endpoint),
            Route("/health", health),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    app.state.queue = queue
    app.state.ledger = ledger
    app.state.settings = settings
    return app
