"""The RQ job function: pieces of audio in, one reply per piece on its reply channel.

Whatever goes wrong, every piece gets its reply (an ``error`` carrying its
``utterance_id``), so no client is left waiting for an utterance that silently vanished.

The queue starts one job; when ``S2T_BATCH_SIZE`` > 1 and the backend can decode batches,
the job function takes the jobs already waiting for the same model
(:func:`shared.queue.gather`) and transcribes them together with it. Each job of a
batch goes through the same steps as a job alone: superseded check, in-flight claim
for the reaper, its own decode options, its own reply, its own metrics. With nothing
waiting (or ``S2T_BATCH_SIZE=1``) a job takes exactly the one-by-one path.

The batch runs under the queue's time limit for the job that started it (SIGALRM in this
process, :data:`shared.queue.JobTimeout`); when it fires, every job of the batch not yet
answered gets ``timeout``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from shared import codec, metrics, protocol, queue
from shared.config import Settings
from shared.heartbeats import worker_alive
from shared.jobs import TranscriptionJob
from shared.models import ModelUnavailableError, UnknownModelError, UnsupportedRequestError, check_request
from shared.queue import JobTimeout, Taken
from shared.speakers import wire
from shared.stream_ledger import StreamLedger
from whisper_service import context, filters
from whisper_service.backends import DecodeOptions, Segment, Transcriber, Transcription
from whisper_service.reply_publisher import publish_reply
from whisper_service.speakers.step import piece_speakers

log = structlog.get_logger()

#: Whisper's input window, seconds.
WINDOW_S = 30.0
#: A partial's encoder window holds its audio and at least this much after it.
PARTIAL_WINDOW_PAD_S = 2.0


def transcribe(payload: dict[str, Any]) -> None:
    job = TranscriptionJob.from_wire(payload)
    ctx = context.current()
    lead = queue.started(job)
    # Every log line of this job carries the ids the gateway and audio service logged too.
    with structlog.contextvars.bound_contextvars(request_id=job.request_id, utterance_id=job.utterance_id):
        if _ledger(ctx).is_superseded(job):
            _skip(ctx, lead)
            return  # nobody wants it: a newer job exists, or the client has gone
    _claim(ctx, lead)
    _handle(ctx, [lead, *_more(ctx, job)])


def _ledger(ctx: context.WorkerContext) -> StreamLedger:
    return StreamLedger.for_settings(ctx.redis, ctx.settings)


def _claim(ctx: context.WorkerContext, taken: Taken) -> None:
    """If this process dies from now on, the reaper retries the job elsewhere. A Redis that
    restarted empty has no heartbeat of this worker until its next beat: one goes first,
    or the reaper would take this live worker's claim for a dead one's."""
    if not worker_alive(ctx.redis, ctx.info.id):
        ctx.announce()
    queue.claim(ctx.redis, taken, ctx.info.id)


def _more(ctx: context.WorkerContext, job: TranscriptionJob) -> list[Taken]:
    """Jobs waiting now that can share this job's model call; none when batching is off or
    the model's backend decodes one piece at a time (openai-whisper)."""
    try:
        transcriber, _ = ctx.models.get(job.model)
    except Exception:
        return []  # this job gets its error reply; the waiting ones stay queued
    limit = ctx.settings.effective_batch_size(getattr(transcriber, "device", "cpu"))
    if limit <= 1 or not hasattr(transcriber, "transcribe_batch"):
        return []

    def accept(extra: Taken) -> bool:
        _claim(ctx, extra)  # at once, before anything else can go wrong
        if _ledger(ctx).is_superseded(extra.job):
            _skip(ctx, extra)
            return False
        return True

    return queue.gather(ctx.redis, job.model, limit - 1, accept)


def _skip(ctx: context.WorkerContext, taken: Taken) -> None:
    """Nobody wants it: a newer job exists, or the client has gone."""
    metrics.JOBS.labels(kind=taken.job.kind, outcome="skipped").inc()
    _ledger(ctx).mark_partial_done(taken.job, _waited(taken.job, time.time()))
    queue.settle(ctx.redis, taken.rq_id)
    queue.release(ctx.redis, taken)


@dataclass
class _Prepared:
    index: int  # in the batch
    taken: Taken
    transcriber: Transcriber
    options: DecodeOptions
    audio: np.ndarray


def _waited(job: TranscriptionJob, started_at: float) -> float:
    """A job's time in the queue (both clocks are wall clocks, the services' hosts in step)."""
    return max(0.0, started_at - job.enqueued_at)


def _handle(ctx: context.WorkerContext, batch: list[Taken]) -> None:
    ctx.info.busy = True
    metrics.BATCH_SIZE.observe(len(batch))
    started_at = time.time()
    started = time.perf_counter()
    replies: dict[int, dict[str, Any]] = {}
    prepared: list[_Prepared] = []
    try:
        for i, taken in enumerate(batch):
            try:
                prepared.append(_prepare(ctx, i, taken))
            except JobTimeout:
                raise
            except Exception as exc:
                replies[i] = _error_reply(ctx, taken.job, exc)
        results = _decode(prepared)
        took = time.perf_counter() - started
        for item, result in zip(prepared, results, strict=True):
            i = item.index
            with structlog.contextvars.bound_contextvars(
                request_id=item.taken.job.request_id, utterance_id=item.taken.job.utterance_id
            ):
                if isinstance(result, Exception):
                    replies[i] = _error_reply(ctx, item.taken.job, result)
                else:
                    if item.taken.job.diarize:  # a timeout here ends the batch like the model's
                        result = _with_words(item, result)
                    reply = _transcript_reply(item, result, took, len(batch))
                    if item.taken.job.diarize:
                        reply = _with_speakers(ctx, item, reply)
                    replies[i] = reply
                    _observe_cost(ctx, item.taken.job, took / len(batch))
    except JobTimeout as exc:  # the queue's limit for the job that started the batch
        for i, taken in enumerate(batch):
            replies.setdefault(i, _error_reply(ctx, taken.job, exc))
    finally:
        ctx.info.busy = False
        _answer(ctx, batch, replies, started_at)


def _aligns_words(transcriber: Transcriber, job: TranscriptionJob) -> bool:
    """A diarized file piece gets word timings (the gateway cuts its segments at each change
    of voice by them) from the backend's aligner, after a decode with the settings the same
    file has unlabelled, so that labels leave the text as it is. Live finals are labelled
    whole; a backend without an aligner (openai-whisper) decodes with word timings."""
    return (
        job.diarize
        and job.stream_id is None
        and not job.word_timestamps
        and hasattr(transcriber, "align_words")
    )


def _with_words(item: _Prepared, result: Transcription) -> Transcription:
    """``result`` with its words aligned (:func:`_aligns_words`); as it was when alignment
    fails: the segments then get the speaker that overlaps them most."""
    if not _aligns_words(item.transcriber, item.taken.job):
        return result
    started = time.perf_counter()
    try:
        aligned: Transcription = item.transcriber.align_words(item.audio, result, item.options)  # type: ignore[attr-defined]
    except JobTimeout:
        raise
    except Exception as exc:
        log.warning("word_alignment_failed", error=repr(exc)[:200])
        return result
    took = time.perf_counter() - started
    metrics.SPEAKERS_DURATION.observe(took)
    log.info("words_aligned", words=sum(len(s.words or []) for s in aligned.segments), took_s=round(took, 3))
    return aligned


def _with_speakers(ctx: context.WorkerContext, item: _Prepared, reply: dict[str, Any]) -> dict[str, Any]:
    """The transcript with the piece's speaker windows; a speaker step that fails (no
    encoder installed, say) makes the piece an error, not a transcript without speakers."""
    try:
        data = piece_speakers(item.taken.job, item.audio, ctx.settings.speaker_model)
    except JobTimeout:
        raise
    except Exception as exc:
        log.error("speakers_failed", utterance_id=item.taken.job.utterance_id, exc_info=exc)
        return protocol.error(
            protocol.ErrorCode.MODEL_UNAVAILABLE,
            f"Speaker labels failed ({type(exc).__name__}: {str(exc)[:160]})",
            utterance_id=item.taken.job.utterance_id,
        )
    return {**reply, wire.REPLY_FIELD: data}


def _observe_cost(ctx: context.WorkerContext, job: TranscriptionJob, took_s: float) -> None:
    """Live jobs only: what the pool's live capacity is worked out from (file pieces of up
    to 30 s cost less per audio second than short utterances, so they would overstate it)."""
    if job.stream_id is not None:
        ctx.costs.observe(job.kind, took_s, job.duration_s)


def _answer(
    ctx: context.WorkerContext, batch: list[Taken], replies: dict[int, dict[str, Any]], started_at: float
) -> None:
    """Publish every job's reply, retried through a Redis restart
    (:mod:`whisper_service.reply_publisher`); a reply that still cannot go out does not
    stop the others, and is raised afterwards so that the queue records the job as
    failed. Only a reply that went out settles its job (:func:`shared.queue.settle`):
    one that did not is queued again by the audio service, which kept its audio.
    ``started_at``: when the batch started, so that each partial's queue wait is noted for
    its stream's pacer (:mod:`audio_service.pacer`)."""
    failed: Exception | None = None
    for i, taken in enumerate(batch):
        job = taken.job
        reply = replies.get(i) or _error_reply(ctx, job, RuntimeError("no reply"))
        delivered = False
        try:
            outcome = "error" if reply.get("type") == "error" else "ok"
            metrics.JOBS.labels(kind=job.kind, outcome=outcome).inc()
            data = codec.dumps({**reply, **job.routing(ctx.info.id)})
            publish_reply(ctx.redis, job.reply_channel, data, ctx.settings.reply_retry_s)
            delivered = True
        except Exception as exc:
            log.warning("reply_failed", utterance_id=job.utterance_id, error=repr(exc)[:200])
            failed = failed or exc
        finally:
            ctx.info.jobs_done += 1
            with contextlib.suppress(Exception):  # Redis gone: the publish error is raised below
                if delivered:
                    queue.settle(ctx.redis, taken.rq_id)
                queue.release(ctx.redis, taken)
                _ledger(ctx).mark_partial_done(job, _waited(job, started_at))
    if failed is not None:
        raise failed


def _prepare(ctx: context.WorkerContext, index: int, taken: Taken) -> _Prepared:
    """The model, decode options and audio of one job; raises what makes it an error reply."""
    job = taken.job
    transcriber, load_s = ctx.models.get(job.model)
    if load_s:
        ctx.announce()
    options = decode_options(ctx.settings, job)
    if job.diarize and job.stream_id is None and not hasattr(transcriber, "align_words"):
        options = dataclasses.replace(options, word_timestamps=True)  # no aligner: the decode's own
    check_request(
        transcriber.name, transcriber.multilingual, options.language, options.task, transcriber.languages
    )
    audio = np.frombuffer(job.pcm, dtype="<i2").astype(np.float32) / 32768.0
    return _Prepared(index, taken, transcriber, options, audio)


def decode_options(settings: Settings, job: TranscriptionJob) -> DecodeOptions:
    """How a job is decoded: the settings ``bench/decode_settings.py`` chose (README,
    "Decode settings"). Live utterances carry their own times, and a file whose reply shows
    no segment times (``job.timestamps`` False) needs no timestamp tokens either."""
    live = job.stream_id is not None
    partial = job.kind == "partial"
    fallback = settings.partial_temperature_fallback if partial else settings.temperature_fallback
    # Past one 30 s window, decoding without timestamps moves on by whole windows and cuts
    # the words at the seam (bench: osr 35 s in one piece, WER 0.014 -> 0.041).
    one_window = job.duration_s <= WINDOW_S
    no_times = job.timestamps is False and settings.file_timestamps == "auto" and one_window
    no_times = no_times and not job.word_timestamps
    # A partial is replaced anyway: its encoder sees its own length plus a pad, not 30 s
    # (bench/partial_window.py measured the cost and the text; README, "Partials").
    least = settings.partial_window_s
    window = min(WINDOW_S, max(least, math.ceil(job.duration_s + PARTIAL_WINDOW_PAD_S)))
    window = window if partial and least > 0 else 0.0
    return DecodeOptions(
        language=job.language,
        task=job.task,
        beam_size=settings.partial_beam_size if partial else settings.beam_size,
        without_timestamps=live or no_times,
        initial_prompt=job.prompt,
        word_timestamps=job.word_timestamps,
        temperature=job.temperature,
        temperature_fallback=fallback,
        condition_on_previous_text=settings.condition_on_previous_text and not live,
        encoder_window_s=window,
    )


def _decode(prepared: list[_Prepared]) -> list[Transcription | Exception]:
    """One model call for the whole batch where the backend can; one job at a time otherwise
    (and always for a single job: today's path, unchanged)."""
    if len(prepared) > 1 and all(p.transcriber is prepared[0].transcriber for p in prepared):
        batched = getattr(prepared[0].transcriber, "transcribe_batch", None)
        if batched is not None:
            # The queue's time limit ends the whole batch; any other failure is one job's own.
            results: list[Transcription | Exception] = batched(
                [(p.audio, p.options) for p in prepared], reraise=(JobTimeout,)
            )
            return results
    out: list[Transcription | Exception] = []
    for p in prepared:
        try:
            out.append(p.transcriber.transcribe(p.audio, p.options))
        except JobTimeout:
            raise
        except Exception as exc:
            out.append(exc)
    return out


def _error_reply(ctx: context.WorkerContext, job: TranscriptionJob, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, JobTimeout):
        log.warning("transcription_timeout", utterance_id=job.utterance_id)
        return protocol.error(
            protocol.ErrorCode.TIMEOUT,
            f"Transcription took longer than {ctx.settings.job_timeout_s} s",
            utterance_id=job.utterance_id,
        )
    if isinstance(exc, UnsupportedRequestError):
        return protocol.error(exc.code, str(exc), utterance_id=job.utterance_id)
    if isinstance(exc, UnknownModelError | ModelUnavailableError):
        return protocol.error(protocol.ErrorCode.MODEL_UNAVAILABLE, str(exc), utterance_id=job.utterance_id)
    log.error("transcription_failed", utterance_id=job.utterance_id, exc_info=exc)
    return protocol.error(
        protocol.ErrorCode.TRANSCRIPTION_FAILED,
        f"Transcription failed ({type(exc).__name__})",
        utterance_id=job.utterance_id,
    )


def _transcript_reply(item: _Prepared, result: Transcription, took: float, batch_size: int) -> dict[str, Any]:
    """``took`` is the time until this job's result was there: the whole batch's model time."""
    job, transcriber = item.taken.job, item.transcriber
    metrics.record_transcription(job.model, job.duration_s, took)
    log.info(
        "transcription_completed",
        utterance_id=job.utterance_id,
        request_id=job.request_id,
        model=job.model,
        audio_s=round(job.duration_s, 3),
        took_s=round(took, 3),
        queue_wait_ms=round((time.time() - job.enqueued_at) * 1000 - took * 1000, 1),
        rtf=round(took / max(job.duration_s, 1e-6), 3),
        batch_size=batch_size,
    )
    kept = filters.clean(result.segments)
    # Word timings already place segments on the words; otherwise, where the client wants
    # subtitle-grade times (the /v1 API), snap them to the speech the audio service's
    # splitter found. Live utterances carry their own times from the stream's speech detector.
    wants_spans = job.trim_segments and job.kind == "final" and not job.word_timestamps
    spans = job.speech_spans if wants_spans else []
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
