"""OpenAI-compatible audio API: ``POST /v1/audio/transcriptions``,
``POST /v1/audio/translations``, ``GET /v1/models``.

Code written for OpenAI's audio API works against this service by changing only the
base URL (and the key, when ``S2T_API_KEY`` is set). Each request is one uploaded file
through :class:`gateway.files.FileJobs` on a reply channel of its own, exactly as the
browser WebSocket does it, so long files are split at silences and spread over every
worker. ``stream=true`` answers with Server-Sent Events shaped like OpenAI's streaming
transcription (``transcript.text.delta`` per piece, then ``transcript.text.done``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway import event_metrics, events, known_speakers
from gateway.context import GatewayContext
from gateway.files import FileJobs
from gateway.model_loading import validate_model_name
from gateway.openai_errors import OpenAIError
from gateway.renderers import diarized
from gateway.speaker_labels import SpeakerHints
from shared import models, subtitles
from shared.heartbeats import workers_for_new_work
from shared.protocol import ProtocolError, too_large_message
from shared.redis_keys import new_reply_channel

#: OpenAI's model name; served by this deployment's default model (``S2T_MODEL``).
MODEL_ALIAS = "whisper-1"
#: Every OpenAI transcription model name, served the same way on the HTTP and realtime
#: APIs, so that clients written for OpenAI work unchanged whichever name they send.
OPENAI_MODEL_NAMES = frozenset(
    {
        MODEL_ALIAS,
        "gpt-transcribe",
        "gpt-live-transcribe",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-4o-mini-transcribe-2025-12-15",
        "gpt-4o-transcribe-diarize",
        "gpt-realtime-whisper",
    }
)
GRANULARITIES = ("segment", "word")
MAX_FORM_FIELDS = 32
#: A form field's limit: a known speaker's reference clip travels as a base64 data URL.
MAX_FIELD_BYTES = known_speakers.MAX_REFERENCE_BYTES * 4 // 3 + 1024
#: Multipart framing and form fields on top of the audio itself (reference clips included).
FORM_OVERHEAD_BYTES = 256 * 1024 + known_speakers.MAX_KNOWN_SPEAKERS * MAX_FIELD_BYTES
#: OpenAI's speaker-labelled format (model ``gpt-4o-transcribe-diarize``), rendered by
#: :mod:`gateway.renderers.diarized` from the labelled pieces.
DIARIZED_FORMAT = "diarized_json"
RESPONSE_FORMATS = (*subtitles.FORMATS, DIARIZED_FORMAT)
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
TRUE_VALUES, FALSE_VALUES = ("true", "1", "yes"), ("false", "0", "no", "")


@dataclass(frozen=True)
class AudioRequest:
    """One validated ``/v1/audio/*`` form."""

    audio: bytes
    model: str
    task: str  # what the model is asked to do
    endpoint_task: str  # what the client asked for ("translate" on the translations endpoint)
    language: str | None
    prompt: str | None
    response_format: str
    temperature: float | None
    words: bool
    stream: bool
    #: Speaker labels asked for (model gpt-4o-transcribe-diarize or diarized_json); None: not.
    speakers: diarized.SpeakerRequest | None = None

    def speaker_hints(self) -> SpeakerHints | None:
        """Speaker labels asked for: FileJobs holds the pieces and labels them together."""
        if self.speakers is None:
            return None
        return SpeakerHints(self.speakers.known_names, self.speakers.min_speakers, self.speakers.max_speakers)

    def hints(self) -> dict[str, Any]:
        """Options for the model. Word timings only when asked for: in faster-whisper they
        also change where decoding resumes, which can make the model decode the silence
        after the last word ("Thank you."). Segment times are trimmed to the speech by the
        worker instead (see ``whisper_service.jobs``): subtitles need cues that end when
        the speaking does. ``timestamps``: only subtitles, verbose_json, word timings and the
        stream's per-piece segments show segment times; json and text decode without
        timestamp tokens, which measured more accurate (README, "Decode settings")."""
        # A diarized stream shows its text once labelled, from the labelled segments: its
        # pieces decode as the same request does without stream=true.
        streamed = self.stream and self.speakers is None
        needs_times = self.words or streamed or self.response_format in ("srt", "vtt", "verbose_json")
        hints: dict[str, Any] = {
            "word_timestamps": self.words,
            "trim_segments": True,
            "timestamps": needs_times,
        }
        if self.speakers is not None and self.speakers.references:
            hints["speaker_references"] = list(self.speakers.references)
        if self.prompt:
            hints["prompt"] = self.prompt
        if self.temperature is not None:
            hints["temperature"] = self.temperature
        return hints


async def read_form(request: Request, max_audio_bytes: int) -> FormData:
    """Parse the multipart body in memory (audio never touches the disk), refusing bodies
    over the audio limit while they stream in rather than after buffering them."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise OpenAIError(
            400,
            "Send the request as multipart/form-data with the audio in a 'file' field",
            code="invalid_content_type",
        )
    limit = max_audio_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise OpenAIError(
            413, too_large_message(int(declared), max_audio_bytes), param="file", code="audio_too_large"
        )

    async def capped() -> AsyncIterator[bytes]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise OpenAIError(
                    413, too_large_message(received, max_audio_bytes), param="file", code="audio_too_large"
                )
            yield chunk

    parser = MultiPartParser(
        request.headers, capped(), max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
    )
    parser.spool_max_size = limit + 1  # keep the upload in memory
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise OpenAIError(400, f"Malformed multipart body: {exc.message}", code="invalid_multipart") from None
    except ClientDisconnect:
        raise OpenAIError(400, "The upload ended early", code="invalid_multipart") from None


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise OpenAIError(400, f"'{name}' must be a form field, not a file", param=name, code="invalid_field")
    return value.strip()


def _flag(form: FormData, name: str) -> bool:
    value = (_field(form, name) or "").lower()
    if value not in TRUE_VALUES + FALSE_VALUES:
        raise OpenAIError(400, f"'{name}' must be true or false", param=name, code="invalid_field")
    return value in TRUE_VALUES


async def parse_request(form: FormData, *, endpoint_task: str, default_model: str) -> AudioRequest:
    """Validate the form the way OpenAI documents it; raise OpenAIError naming the field."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise OpenAIError(
            400,
            "The audio file is missing: send it in the multipart field 'file'",
            param="file",
            code="missing_field",
        )
    audio = await upload.read()
    if not audio:
        raise OpenAIError(400, "The audio file is empty", param="file", code="empty_audio")

    requested_model = _field(form, "model")
    if not requested_model:
        raise OpenAIError(400, "'model' is required (e.g. whisper-1)", param="model", code="missing_field")
    model = default_model if requested_model in OPENAI_MODEL_NAMES else requested_model
    try:
        spec = validate_model_name(model)
    except ProtocolError as exc:
        message = f"{exc.message}, or {MODEL_ALIAS}"
        raise OpenAIError(400, message, param="model", code="unknown_model") from None

    response_format = _field(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise OpenAIError(
            400,
            f"Unknown response_format '{response_format[:40]}'; expected one of: "
            f"{', '.join(RESPONSE_FORMATS)}",
            param="response_format",
            code="invalid_field",
        )

    language = (_field(form, "language") or "").lower() or None
    if language is not None and language != "auto" and not LANGUAGE_CODE.fullmatch(language):
        raise OpenAIError(
            400,
            f"'language' must be an ISO-639-1 code such as 'en', not '{language[:20]}'",
            param="language",
            code="invalid_field",
        )

    temperature: float | None = None
    if raw := _field(form, "temperature"):
        try:
            temperature = float(raw)
        except ValueError:
            temperature = -1.0
        if not 0.0 <= temperature <= 1.0:
            raise OpenAIError(
                400,
                "'temperature' must be a number between 0 and 1",
                param="temperature",
                code="invalid_field",
            )

    granularities = [
        g for key in ("timestamp_granularities[]", "timestamp_granularities") for g in form.getlist(key)
    ]
    if any(g not in GRANULARITIES for g in granularities):
        raise OpenAIError(
            400,
            f"'timestamp_granularities[]' entries must be one of: {', '.join(GRANULARITIES)}",
            param="timestamp_granularities",
            code="invalid_field",
        )

    stream = _flag(form, "stream")
    speakers = _speaker_request(form, requested_model, response_format, endpoint_task)

    # An English-only model hears only English, and English translated to English is the
    # transcript itself; so "translate" on such a model transcribes instead of failing.
    task = endpoint_task if spec.multilingual else "transcribe"
    return AudioRequest(
        audio=audio,
        model=model,
        task=task,
        endpoint_task=endpoint_task,
        language=language,
        prompt=_field(form, "prompt") or None,
        response_format=response_format,
        temperature=temperature,
        words="word" in granularities,
        stream=stream,
        speakers=speakers,
    )


def _strings(form: FormData, name: str) -> list[str]:
    """A repeated field, as the SDK sends lists (``name[]``) or as plain repeats."""
    values = [*form.getlist(f"{name}[]"), *form.getlist(name)]
    if not all(isinstance(v, str) for v in values):
        raise OpenAIError(400, f"'{name}[]' must be form fields, not files", param=name, code="invalid_field")
    return [str(v) for v in values]


_SPEAKER_FIELDS = ("known_speaker_names", "known_speaker_references", "min_speakers", "max_speakers")


def _speaker_request(
    form: FormData, requested_model: str, response_format: str, endpoint_task: str
) -> diarized.SpeakerRequest | None:
    """The speaker fields, checked, when speaker labels are asked for; None otherwise."""
    wanted = requested_model == diarized.DIARIZE_MODEL or response_format == DIARIZED_FORMAT
    names, refs = _strings(form, "known_speaker_names"), _strings(form, "known_speaker_references")
    if not wanted:
        given = [f for f in _SPEAKER_FIELDS if form.get(f) is not None or form.get(f"{f}[]") is not None]
        if given:
            raise OpenAIError(
                400,
                f"'{given[0]}' needs speaker labels: model '{diarized.DIARIZE_MODEL}' "
                f"or response_format '{DIARIZED_FORMAT}'",
                param=given[0],
                code="invalid_field",
            )
        return None
    if endpoint_task != "transcribe":
        raise OpenAIError(
            400, "Speaker labels are for /v1/audio/transcriptions", param="model", code="invalid_field"
        )
    chunking = _field(form, "chunking_strategy")
    diarized.check_chunking_strategy(chunking, _field(form, "chunking_strategy[type]"))
    return diarized.parse_speaker_fields(
        names, refs, _field(form, "min_speakers"), _field(form, "max_speakers")
    )


class FileRun:
    """One request's file through FileJobs on its own reply channel; its typed events are
    this endpoint's to render."""

    def __init__(self, ctx: GatewayContext, request: AudioRequest) -> None:
        self.ctx = ctx
        self.request = request
        self.channel = new_reply_channel()
        self.events: asyncio.Queue[events.FileEvent] = asyncio.Queue()
        self.files = FileJobs(ctx, self.channel, self._emit, max_inflight=1)
        self.pieces_total = 0
        self.duration_s = 0.0
        self._watchdog: asyncio.Task[None] | None = None

    def _emit(self, event: events.FileEvent) -> None:
        event_metrics.record(event)  # counted like what the WebSocket protocols send
        self.events.put_nowait(event)

    async def start(self) -> None:
        """Subscribe, then hand the audio over; raise OpenAIError if refused at once (the
        caller closes the run either way)."""
        await self.ctx.router.register(self.channel, self.files.on_reply)
        req = self.request
        try:
            self.files.accept(
                req.audio,
                language=req.language,
                task=req.task,
                model=req.model,
                client_request_id=None,
                hints=req.hints(),
                speakers=req.speaker_hints(),
            )
        except ProtocolError as exc:
            raise OpenAIError.from_code(exc.code, exc.message) from None
        self._watchdog = asyncio.create_task(self.files.watch_deadlines())

    async def close(self) -> None:
        await self.ctx.router.unregister(self.channel)
        await self.files.aclose()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog

    async def queued(self) -> None:
        """Until the audio service has decoded and queued the file (so a file ffmpeg cannot
        read still gets a proper HTTP status, also when streaming)."""
        while True:
            match await self.events.get():
                case (
                    events.FileRefused(code=code, message=message)
                    | events.PieceFailed(code=code, message=message)
                ):
                    raise OpenAIError.from_code(code, message)
                case events.FileQueued(pieces=pieces, duration_s=duration_s):
                    self.pieces_total = pieces
                    self.duration_s = duration_s
                    return

    async def pieces(self) -> AsyncIterator[dict[str, Any]]:
        """Each piece's final transcript in file order; a failed piece raises OpenAIError."""
        while True:
            match await self.events.get():
                case events.PieceDone(message=message):
                    yield message
                case (
                    events.PieceFailed(code=code, message=message)
                    | events.FileRefused(code=code, message=message)
                ):
                    raise OpenAIError.from_code(code, message)
                case events.FileDone():
                    return


class OpenAIAudioAPI:
    """The ``/v1`` routes; counts requests in flight so an overloaded gateway says 429."""

    def __init__(self) -> None:
        self.inflight = 0

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
            Route("/v1/audio/translations", self.translations, methods=["POST"]),
            Route("/v1/models", self.list_models),
            Route("/v1/models/{model:path}", self.get_model),
        ]

    async def transcriptions(self, request: Request) -> Response:
        return await self._handle(request, "transcribe")

    async def translations(self, request: Request) -> Response:
        return await self._handle(request, "translate")

    async def _handle(self, request: Request, endpoint_task: str) -> Response:
        ctx: GatewayContext = request.app.state.ctx
        try:
            form = await read_form(request, ctx.settings.max_audio_bytes)
            try:
                req = await parse_request(form, endpoint_task=endpoint_task, default_model=ctx.settings.model)
            finally:
                await form.close()
            await self._check_capacity(ctx)
            self.inflight += 1
            run = FileRun(ctx, req)
            try:
                await run.start()
                await run.queued()
            except BaseException:
                self.inflight -= 1
                await run.close()
                raise
        except OpenAIError as exc:
            return exc.response()
        if req.stream:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(self._events(run), media_type="text/event-stream", headers=headers)
        try:
            pieces = [piece async for piece in run.pieces()]
        except OpenAIError as exc:
            return exc.response()
        finally:
            self.inflight -= 1
            await run.close()
        body = _render(req, run, pieces)
        if isinstance(body, dict):
            return JSONResponse(body)
        return PlainTextResponse(body, media_type=subtitles.MEDIA_TYPES[req.response_format])

    async def _check_capacity(self, ctx: GatewayContext) -> None:
        if self.inflight >= ctx.settings.max_clients:
            raise OpenAIError(
                429, f"{self.inflight} files are being transcribed; try again shortly", code="busy"
            )
        try:
            workers = await workers_for_new_work(ctx.redis)
        except Exception:
            workers = []
        if not workers:
            raise OpenAIError(503, "No transcription worker is running; try again shortly", code="no_workers")

    async def _events(self, run: FileRun) -> AsyncIterator[str]:
        """SSE: an empty first delta announcing the piece count, one delta per piece as it
        completes (in file order), then ``transcript.text.done``. Extra ``x_*`` fields carry
        progress and timings; OpenAI's SDK keeps them on the event objects. With speaker
        labels the pieces come once the file is done (FileJobs labels them together), then
        one ``transcript.text.segment`` per labelled segment before the done event, as
        OpenAI streams diarized_json."""
        total = run.pieces_total
        texts: list[str] = []
        pieces: list[dict[str, Any]] = []
        try:
            progress = {"completed": 0, "pieces": total, "duration_s": run.duration_s}
            yield _sse(
                {"type": "transcript.text.delta", "delta": "", "logprobs": None, "x_progress": progress}
            )
            try:
                async for index, piece in _enumerate(run.pieces()):
                    pieces.append(piece)
                    text = str(piece.get("transcript") or "").strip()
                    delta = (" " if texts and text else "") + text
                    texts.extend([text] if text else [])
                    total = max(total, index + 1)
                    progress = {"completed": index + 1, "pieces": total, "duration_s": run.duration_s}
                    info = _piece_info(index, piece, words=run.request.words)
                    yield _sse(
                        {
                            "type": "transcript.text.delta",
                            "delta": delta,
                            "logprobs": None,
                            "x_progress": progress,
                            "x_piece": info,
                        }
                    )
                if run.request.speakers is not None:
                    for segment in _diarized(run, pieces)["segments"]:
                        yield _sse(segment)
            except OpenAIError as exc:
                yield _sse(exc.body())
                return
            yield _sse({"type": "transcript.text.done", "text": " ".join(texts), "logprobs": None})
        finally:
            self.inflight -= 1
            await run.close()

    async def list_models(self, request: Request) -> JSONResponse:
        ctx: GatewayContext = request.app.state.ctx
        names = [MODEL_ALIAS, *models.available_names()]
        if ctx.settings.model not in names:
            names.append(ctx.settings.model)
        return JSONResponse({"object": "list", "data": [_model_object(n) for n in names]})

    async def get_model(self, request: Request) -> JSONResponse:
        name = request.path_params["model"]
        if name not in OPENAI_MODEL_NAMES:
            try:
                validate_model_name(name)
            except ProtocolError as exc:
                return OpenAIError(404, exc.message, param="model", code="model_not_found").response()
        return JSONResponse(_model_object(name))


def _diarized(run: FileRun, pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """diarized_json from the labelled pieces (:class:`gateway.files.FileJobs` labels them)."""
    segs = [(s["start"], s["end"], s["text"], s.get("speaker") or "A") for s in subtitles.segments(pieces)]
    return diarized.render_diarized_json(segs, duration_s=run.duration_s)


def _render(req: AudioRequest, run: FileRun, pieces: list[dict[str, Any]]) -> str | dict[str, Any]:
    if req.response_format == DIARIZED_FORMAT:
        return _diarized(run, pieces)
    return subtitles.render(
        req.response_format, pieces, duration_s=run.duration_s, task=req.endpoint_task, words=req.words
    )


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "whisper-appliance"}


def _piece_info(index: int, piece: dict[str, Any], *, words: bool) -> dict[str, Any]:
    """Where a streamed piece sits and which worker did it; word lists only when asked."""
    keys = ("start", "end", "language", "worker_id", "model", "no_speech")
    info = {"index": index, **{k: piece[k] for k in keys if k in piece}}
    info["segments"] = [
        s if words else {k: v for k, v in s.items() if k != "words"} for s in piece.get("segments", [])
    ]
    return info


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _enumerate(items: AsyncIterator[dict[str, Any]]) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    index = 0
    async for item in items:
        yield index, item
        index += 1
