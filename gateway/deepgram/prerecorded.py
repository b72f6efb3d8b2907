"""Deepgram's pre-recorded API: ``POST /v1/listen`` with the audio as the body, answered
with Deepgram's JSON (``metadata``, ``results.channels[0].alternatives[0]`` with word
times, and ``utterances`` / ``paragraphs`` when asked for).

The file goes the way of ``/v1/audio/transcriptions`` (:class:`gateway.openai_api.FileRun`:
decoded by the audio service, split at pauses, pieces transcribed in parallel), decoded
with word timings, so the words carry the model's own times. A JSON body with a ``url``
is refused: this service fetches nothing from outside the machines it runs on.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from gateway.context import GatewayContext
from gateway.deepgram import words
from gateway.deepgram.errors import DeepgramError
from gateway.deepgram.options import ListenOptions, parse_options
from gateway.model_loading import validate_request
from gateway.openai_api import AudioRequest, FileRun
from gateway.openai_errors import OpenAIError
from gateway.renderers.deepgram import model_info
from shared import subtitles
from shared.errors import ErrorCode
from shared.heartbeats import workers_for_new_work
from shared.protocol import ProtocolError, too_large_message

#: A pause at least this long between two segments starts a new paragraph.
PARAGRAPH_PAUSE_S = 1.5


async def listen_prerecorded(request: Request) -> Response:
    request_id = str(uuid.uuid4())
    ctx: GatewayContext = request.app.state.ctx
    try:
        options = parse_options(request.query_params, live=False)
        model = options.model or ctx.settings.model
        try:
            language = validate_request(model, options.language, "transcribe")
        except ProtocolError as exc:
            raise DeepgramError(exc.code, exc.message, status=400) from None
        audio = await read_audio(request, ctx.settings.max_audio_bytes)
        await _check_workers(ctx)
        pieces, duration_s = await _transcribe(ctx, audio, model, language)
    except DeepgramError as exc:
        return exc.response(request_id)
    body = response_body(pieces, options, model, request_id, duration_s, hashlib.sha256(audio).hexdigest())
    return JSONResponse(body, headers={"dg-request-id": request_id})


async def read_audio(request: Request, max_bytes: int) -> bytes:
    """The body, in memory, refused as soon as it passes the audio limit."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        raise DeepgramError(
            ErrorCode.INVALID_FIELD,
            "This server does not fetch audio from a URL (nothing leaves or enters it but "
            "the request); send the audio itself as the request body",
            status=400,
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise DeepgramError(ErrorCode.AUDIO_TOO_LARGE, too_large_message(int(declared), max_bytes))
    chunks, received = [], 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise DeepgramError(ErrorCode.AUDIO_TOO_LARGE, too_large_message(received, max_bytes))
            chunks.append(chunk)
    except ClientDisconnect:
        raise DeepgramError(ErrorCode.INVALID_AUDIO, "The upload ended early", status=400) from None
    audio = b"".join(chunks)
    if not audio:
        raise DeepgramError(ErrorCode.EMPTY_AUDIO, "The request body is empty; send the audio as the body")
    return audio


async def _check_workers(ctx: GatewayContext) -> None:
    try:
        workers = await workers_for_new_work(ctx.redis)
    except Exception:
        workers = []
    if not workers:
        raise DeepgramError(ErrorCode.NO_WORKERS, "No transcription worker is running; try again shortly")


async def _transcribe(
    ctx: GatewayContext, audio: bytes, model: str, language: str | None
) -> tuple[list[dict[str, Any]], float]:
    request = AudioRequest(
        audio=audio,
        model=model,
        task="transcribe",
        endpoint_task="transcribe",
        language=language,
        prompt=None,
        response_format="verbose_json",
        temperature=None,
        words=True,
        stream=False,
    )
    run = FileRun(ctx, request)
    try:
        await run.start()
        await run.queued()
        pieces = [piece async for piece in run.pieces()]
    except OpenAIError as exc:
        raise DeepgramError(exc.code or ErrorCode.INTERNAL_ERROR, exc.message, status=exc.status) from None
    finally:
        await run.close()
    return pieces, run.duration_s


def response_body(
    pieces: list[dict[str, Any]],
    options: ListenOptions,
    model: str,
    request_id: str,
    duration_s: float,
    sha256: str,
) -> dict[str, Any]:
    punctuated = options.punctuated
    segments = subtitles.segments(pieces)
    text = subtitles.joined_text(pieces)
    conf = words.confidence(segments)
    word_list = words.timed_words(segments, punctuated)
    if word_list is None:
        word_list = [w for s in segments for w in _spread(s, punctuated)]
    alternative: dict[str, Any] = {
        "transcript": words.transcript_text(text, punctuated),
        "confidence": conf if text else 0.0,
        "words": word_list,
    }
    if options.paragraphs:
        alternative["paragraphs"] = paragraphs(segments)
    results: dict[str, Any] = {"channels": [{"alternatives": [alternative]}]}
    if options.utterances:
        results["utterances"] = [_utterance(s, punctuated) for s in segments]
    model_uuid, info = model_info(model)
    metadata = {
        "transaction_key": "deprecated",
        "request_id": request_id,
        "sha256": sha256,
        "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "duration": round(duration_s, 3),
        "channels": 1,
        "models": [model_uuid],
        "model_info": {model_uuid: info},
    }
    return {"metadata": metadata, "results": results}


def _spread(segment: dict[str, Any], punctuated: bool) -> list[dict[str, Any]]:
    conf = words.confidence([segment])
    return words.spread_words(segment["text"].strip(), segment["start"], segment["end"], conf, punctuated)


def _utterance(segment: dict[str, Any], punctuated: bool) -> dict[str, Any]:
    seg_words = words.timed_words([segment], punctuated) or _spread(segment, punctuated)
    return {
        "start": segment["start"],
        "end": segment["end"],
        "confidence": words.confidence([segment]),
        "channel": 0,
        "transcript": words.transcript_text(segment["text"], punctuated),
        "words": seg_words,
        "id": str(uuid.uuid4()),
    }


def paragraphs(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Whisper's segments as sentences; a long pause starts a new paragraph."""
    groups: list[list[dict[str, Any]]] = []
    for seg in segments:
        if not groups or seg["start"] - groups[-1][-1]["end"] >= PARAGRAPH_PAUSE_S:
            groups.append([])
        groups[-1].append(seg)
    out = []
    for group in groups:
        sentences = [{"text": s["text"].strip(), "start": s["start"], "end": s["end"]} for s in group]
        out.append(
            {
                "sentences": sentences,
                "num_words": sum(len(s["text"].split()) for s in sentences),
                "start": group[0]["start"],
                "end": group[-1]["end"],
            }
        )
    transcript = "".join("\n" + " ".join(s["text"] for s in p["sentences"]) + "\n" for p in out)
    return {"transcript": transcript, "paragraphs": out}
