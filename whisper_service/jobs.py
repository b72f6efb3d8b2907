"""The RQ job function: one piece of audio in, one reply out on the job's reply channel.

Whatever goes wrong, the reply is sent (an ``error`` carrying the ``utterance_id``),
so the client is never left waiting for an utterance that silently vanished.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import structlog
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from audio_service.decoder import SAMPLE_RATE
from audio_service.splitter import speech_regions
from shared import inflight, metrics, protocol
from shared.jobs import TranscriptionJob
from shared.models import ModelUnavailableError, UnknownModelError, UnsupportedRequestError, check_request
from shared.redis_keys import stream_key
from whisper_service import context, filters
from whisper_service.backends import DecodeOptions, Segment

log = structlog.get_logger()


def transcribe(payload: dict[str, Any]) -> None:
    job = TranscriptionJob.from_wire(payload)
    # Every log line of this job carries the ids the gateway and audio service logged too.
    with structlog.contextvars.bound_contextvars(request_id=job.request_id, utterance_id=job.utterance_id):
        _handle(context.current(), job)


def _handle(ctx: context.WorkerContext, job: TranscriptionJob) -> None:
    if job.stream_id is not None and _superseded(ctx, job):
        metrics.JOBS.labels(kind=job.kind, outcome="skipped").inc()
        _partial_done(ctx, job)
        return  # nobody wants it: a newer job exists, or the client has gone
    ctx.info.busy = True
    rq_job = get_current_job()
    if rq_job is not None:  # if this process dies now, the reaper retries the job elsewhere
        inflight.claim(ctx.redis, rq_job.id, ctx.info.id, rq_job.origin, job)
    try:
        reply = _run(ctx, job)
        metrics.JOBS.labels(kind=job.kind, outcome="error" if reply.get("type") == "error" else "ok").inc()
        ctx.publish(job.reply_channel, {**reply, **job.routing(ctx.info.id)})
    finally:
        ctx.info.busy = False
        ctx.info.jobs_done += 1
        if rq_job is not None:
            inflight.release(ctx.redis, rq_job.id)
    _partial_done(ctx, job)


def _superseded(ctx: context.WorkerContext, job: TranscriptionJob) -> bool:
    """Under load partials thin out: a partial older than its stream's newest job is
    skipped, so workers spend their time on finals and on the freshest partial. A
    candidate is skipped once speech resumed and revoked it."""
    key = stream_key(job.stream_id or "")
    latest, revoked, cancelled = ctx.redis.hmget(key, ["latest", f"revoked:{job.seq}", "cancelled"])
    if cancelled:
        return True
    if job.kind == "candidate":  # each candidate is revoked by name: they finish in any order
        return revoked is not None
    return job.kind == "partial" and latest is not None and int(latest) > job.seq


def _partial_done(ctx: context.WorkerContext, job: TranscriptionJob) -> None:
    """Tell the audio service this stream may have its next partial."""
    if job.kind == "partial" and job.stream_id is not None:
        ctx.redis.hset(stream_key(job.stream_id), "done", job.seq)


def _run(ctx: context.WorkerContext, job: TranscriptionJob) -> dict[str, Any]:
    started = time.perf_counter()
    queue_wait_s = time.time() - job.enqueued_at
    try:
        transcriber, load_s = ctx.models.get(job.model)
        if load_s:
            ctx.announce()
        options = DecodeOptions(
            language=job.language,
            task=job.task,
            beam_size=ctx.settings.partial_beam_size if job.kind == "partial" else ctx.settings.beam_size,
            without_timestamps=job.stream_id is not None,  # live: the utterance has its own times
            initial_prompt=job.prompt,
            word_timestamps=job.word_timestamps,
            temperature=job.temperature,
        )
        check_request(
            transcriber.name, transcriber.multilingual, options.language, options.task, transcriber.languages
        )
        audio = np.frombuffer(job.pcm, dtype="<i2").astype(np.float32) / 32768.0
        result = transcriber.transcribe(audio, options)
    except JobTimeoutException:
        log.warning("transcription_timeout", utterance_id=job.utterance_id)
        return protocol.error(
            protocol.ErrorCode.TIMEOUT,
            f"Transcription took longer than {ctx.settings.job_timeout_s} s",
            utterance_id=job.utterance_id,
        )
    except UnsupportedRequestError as exc:
        return protocol.error(exc.code, str(exc), utterance_id=job.utterance_id)
    except (UnknownModelError, ModelUnavailableError) as exc:
        return protocol.error(protocol.ErrorCode.MODEL_UNAVAILABLE, str(exc), utterance_id=job.utterance_id)
    except Exception as exc:
        log.exception("transcription_failed", utterance_id=job.utterance_id)
        return protocol.error(
            protocol.ErrorCode.TRANSCRIPTION_FAILED,
            f"Transcription failed ({type(exc).__name__})",
            utterance_id=job.utterance_id,
        )
    took = time.perf_counter() - started
    metrics.record_transcription(job.model, job.duration_s, took)
    log.info(
        "transcription_completed",
        utterance_id=job.utterance_id,
        request_id=job.request_id,
        model=job.model,
        audio_s=round(job.duration_s, 3),
        took_s=round(took, 3),
        queue_wait_ms=round(queue_wait_s * 1000, 1),
        rtf=round(took / max(job.duration_s, 1e-6), 3),
    )
    kept = filters.clean(result.segments)
    # Word timings already place segments on the words; otherwise, where the client wants
    # subtitle-grade times (the /v1 API), snap them to the speech. Live utterances carry
    # their own times from the stream's speech detector.
    wants_spans = job.trim_segments and job.kind == "final" and not job.word_timestamps
    spans = speech_spans(audio) if wants_spans else []
    segments = [_segment(s, job.offset_s, job.duration_s, spans) for s in kept]
    start = segments[0]["start"] if segments else job.offset_s
    end = segments[-1]["end"] if segments else job.offset_s + job.duration_s
    return protocol.transcript(
        " ".join(s.text for s in kept).strip(),
        final=job.kind == "final",
        utterance_id=job.utterance_id,
        language=result.language,
        source=job.source,
        start=start,
        end=min(end, job.offset_s + job.duration_s),
        model=job.model,
        backend=transcriber.backend,
        language_probability=(
            round(result.language_probability, 3) if result.language_probability is not None else None
        ),
        segments=segments,
        processing_ms=round(took * 1000),
    )


def speech_spans(audio: np.ndarray) -> list[tuple[float, float]]:
    """Where the piece has speech (seconds), by the same VAD the audio service splits with."""
    try:
        return [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in speech_regions(audio)]
    except Exception:  # timings are a refinement; never lose a transcript over them
        log.exception("speech_spans_failed")
        return []


def _segment(
    segment: Segment, offset_s: float, duration_s: float, spans: list[tuple[float, float]]
) -> dict[str, Any]:
    """A segment with times in the whole file (``offset_s`` is where the piece starts), and
    the decoder's confidence figures that OpenAI's ``verbose_json`` reports.

    Whisper ends a segment where the next one starts, so before a pause its end runs on
    through the silence (seconds late in subtitles), and it may even place it past the
    audio it was given. Times are therefore kept inside the piece and, given ``spans``,
    trimmed to the speech the segment overlaps."""
    start, end = segment.start, max(segment.end, segment.start)
    overlapping = [(a, b) for a, b in spans if a < end and b > start]
    if overlapping:
        start, end = max(start, overlapping[0][0]), min(end, overlapping[-1][1])

    def at(t: float) -> float:
        return round(offset_s + min(max(t, 0.0), duration_s), 3)

    out: dict[str, Any] = {
        "start": at(start),
        "end": at(end),
        "text": segment.text,
        "avg_logprob": round(segment.avg_logprob, 4),
        "no_speech_prob": round(segment.no_speech_prob, 4),
        "compression_ratio": round(segment.compression_ratio, 4),
        "temperature": segment.temperature,
    }
    if segment.words is not None:
        out["words"] = [
            {"word": w.word.strip(), "start": at(w.start), "end": at(max(w.end, w.start))}
            for w in segment.words
        ]
    return out
