"""The RQ job function: one piece of audio in, one reply out on the job's reply channel.

Whatever goes wrong, the reply is sent (an ``error`` carrying the ``utterance_id``),
so the client is never left waiting for an utterance that silently vanished.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import structlog
from rq.timeouts import JobTimeoutException

from shared import protocol
from shared.jobs import TranscriptionJob
from shared.models import ModelUnavailableError, UnknownModelError, UnsupportedRequestError, check_request
from whisper_service import context
from whisper_service.backends import DecodeOptions

log = structlog.get_logger()


def transcribe(payload: dict[str, Any]) -> None:
    ctx = context.current()
    job = TranscriptionJob.from_wire(payload)
    ctx.info.busy = True
    try:
        reply = _run(ctx, job)
    finally:
        ctx.info.busy = False
        ctx.info.jobs_done += 1
    ctx.publish(job.reply_channel, {**reply, **job.routing(ctx.info.id)})


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
            beam_size=ctx.settings.beam_size,
            initial_prompt=job.prompt,
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
    segments = [
        {"start": round(job.offset_s + s.start, 3), "end": round(job.offset_s + s.end, 3), "text": s.text}
        for s in result.segments
    ]
    start = segments[0]["start"] if segments else job.offset_s
    end = segments[-1]["end"] if segments else job.offset_s + job.duration_s
    return protocol.transcript(
        result.text,
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
