"""One ``/v1/realtime`` connection: OpenAI Realtime transcription events in, the same
live path as every protocol underneath, and its typed events rendered as Realtime
server events by :class:`gateway.renderers.realtime.RealtimeRenderer`.

:class:`RealtimeProtocol` is a protocol handler of a :class:`gateway.connection.Connection`
(same outbox, reply routing, rate limit, Redis-state handling, stuck-final expiry,
metrics): the recording is fed from ``input_audio_buffer.append`` instead of binary
frames, and ``commit`` / ``clear`` / session updates become stream controls.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import structlog
from starlette.websockets import WebSocket

from gateway import events
from gateway.connection import Connection
from gateway.realtime import events as rt
from gateway.realtime.config import (
    ConfigError,
    TranscriptionConfig,
    apply_beta_update,
    apply_ga_update,
    default_config,
)
from gateway.recording import Recording
from gateway.renderers.realtime import RealtimeRenderer
from gateway.ws import serve
from shared import metrics, protocol
from shared import stream_protocol as sp
from shared.audio_format import PCM16_24K
from shared.protocol import ErrorCode, ProtocolError, loads_untrusted

log = structlog.get_logger()

#: Our extension (README, "Resuming a realtime session"): asked for with ``?resumable=true``,
#: so that OpenAI's own clients never see an event type they do not know.
RESUME_EVENT = "x_session.resume"
CLIENT_EVENTS = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    RESUME_EVENT,
)
#: OpenAI refuses a commit only below this much uncommitted audio; any more makes an item.
MIN_COMMIT_MS = 100


def bytes_per_ms(fmt: str) -> int:
    """Input bytes per millisecond: 24 kHz PCM16 (48), G.711 at 8 kHz (8)."""
    return 48 if fmt == PCM16_24K else 8


def commit_empty_message(buffered_ms: float) -> str:
    """OpenAI's own wording, so clients that match on it keep working."""
    return (
        "Error committing input audio buffer: buffer too small. Expected at least "
        f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio."
    )


class RealtimeProtocol:
    def __init__(self, connection: Connection) -> None:
        self.conn = connection
        self.settings = connection.settings
        self.config: TranscriptionConfig = default_config(
            connection.ws.query_params.get("model"), connection.settings.model
        )
        resumable = connection.ws.query_params.get("resumable", "").lower() in ("1", "true", "yes")
        #: A beta client (the header the SDK's ``beta.realtime`` sends) is greeted and
        #: answered in the beta's shapes: OpenAI served both until the beta was retired.
        self.beta = "realtime=v1" in connection.ws.headers.get("openai-beta", "")
        self.renderer = RealtimeRenderer(
            server_vad=lambda: self.config.turn_detection is not None, resumable=resumable, beta=self.beta
        )
        self._parsed: tuple[str, Any] = ("", None)  # the last text frame and its JSON
        #: A stream refused ``busy`` is asked for again by the first append after this
        #: (monotonic); the audio appended before it is dropped, as the error said.
        self._refused_until = 0.0
        #: Milliseconds appended since the last commit or clear (OpenAI's input buffer);
        #: with server VAD its own commits (an utterance queued) empty it too.
        self._uncommitted_ms = 0.0

    async def opened(self) -> None:
        if self.beta:  # what OpenAI's beta sent a transcription session (the SDK's union lacks it)
            self.conn.push(rt.event("transcription_session.created", session=self.config.beta_session()))
        else:
            self.conn.push(rt.event("session.created", session=self.config.ga_session()))

    def render(self, event: events.Event) -> list[dict[str, Any]]:
        if isinstance(event, events.UtteranceQueued) and self.config.turn_detection is not None:
            self._uncommitted_ms = 0.0  # server VAD committed the buffer
        out = self.renderer.render(event)
        for server_event in out:
            if server_event["type"] == "error":
                error = server_event["error"]
                log.warning(
                    "realtime_error",
                    code=error.get("code"),
                    error_type=error.get("type"),
                    event_id=server_event["event_id"],
                    client_event_id=error.get("event_id"),
                    param=error.get("param"),
                    message=error.get("message"),
                )
        return out

    def rate_exempt(self, message: dict[str, Any]) -> bool:
        """Audio appends are the stream itself, so (like ``/ws`` binary frames while
        recording) they are not counted against the per-minute message limit."""
        text = message.get("text")
        if not isinstance(text, str):
            return False
        self._parsed = (text, _parse(text))  # parsed once: on_text takes it from here
        event = self._parsed[1]
        return isinstance(event, dict) and event.get("type") == "input_audio_buffer.append"

    # --- client events ------------------------------------------------------------------

    async def on_text(self, text: str) -> None:
        event_id = None
        cached_text, message = self._parsed
        if cached_text is not text:
            message = _parse(text)
        self._parsed = ("", None)
        try:
            if message is None:
                raise ConfigError(ErrorCode.INVALID_JSON, "The message is not valid JSON")
            if not isinstance(message, dict):
                raise ConfigError(ErrorCode.INVALID_JSON, "An event must be a JSON object")
            event_id = message.get("event_id") if isinstance(message.get("event_id"), str) else None
            kind = message.get("type")
            metrics.WS_MESSAGES.labels(command=kind if kind in CLIENT_EVENTS else "unknown").inc()
            await self._dispatch_event(str(kind), message)
        except ConfigError as exc:
            self.conn.error(exc.code, exc.message, param=exc.param, event_id=event_id)
        except ProtocolError as exc:
            self.conn.error(exc.code, exc.message, event_id=event_id, retry_after_s=exc.retry_after_s)

    async def _dispatch_event(self, kind: str, message: dict[str, Any]) -> None:
        default_model = self.settings.model
        match kind:
            case "input_audio_buffer.append":
                await self._append(message.get("audio"))
            case "session.update":
                await self._reconfigure(apply_ga_update(self.config, message.get("session"), default_model))
                self.conn.push(rt.event("session.updated", session=self.config.ga_session()))
            case "transcription_session.update":
                await self._reconfigure(apply_beta_update(self.config, message.get("session"), default_model))
                self.conn.push(rt.event("transcription_session.updated", session=self.config.beta_session()))
            case "input_audio_buffer.commit":
                recording = self.conn.live_recording
                if recording is None or self._uncommitted_ms < MIN_COMMIT_MS:
                    # the buffer stays as it was (as OpenAI's): more audio and a commit go on
                    raise ConfigError(
                        "input_audio_buffer_commit_empty", commit_empty_message(self._uncommitted_ms)
                    )
                self._uncommitted_ms = 0.0
                await recording.control(sp.Commit())
            case "x_session.resume":
                await self._resume(message)
            case "input_audio_buffer.clear":
                self._uncommitted_ms = 0.0
                if (recording := self.conn.live_recording) is not None:
                    await recording.control(sp.Clear())
                self.conn.push(rt.event("input_audio_buffer.cleared"))
            case _:
                raise ConfigError(
                    "invalid_event",
                    f"Unknown or unsupported event type {kind[:60]!r}; this server takes: "
                    + ", ".join(CLIENT_EVENTS),
                    "type",
                )

    async def on_binary(self, data: bytes) -> None:
        self.conn.error(
            "invalid_event", "Binary frames are not part of the Realtime API; send input_audio_buffer.append"
        )

    async def _append(self, audio: Any) -> None:
        if not isinstance(audio, str) or not audio:
            raise ConfigError(ErrorCode.MISSING_FIELD, "'audio' must be base64-encoded audio", "audio")
        if len(audio) * 3 // 4 > self.settings.max_audio_bytes:
            raise ProtocolError(
                ErrorCode.AUDIO_TOO_LARGE,
                protocol.too_large_message(len(audio) * 3 // 4, self.settings.max_audio_bytes),
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(ErrorCode.INVALID_BASE64, "'audio' is not valid base64", "audio") from None
        recording = self.conn.live_recording
        if recording is None:
            if time.monotonic() < self._refused_until:
                return  # refused ``busy`` moments ago: one error, not one per append
            try:
                recording = await self._start()
            except ProtocolError as exc:
                if exc.retry_after_s is not None:
                    self._refused_until = time.monotonic() + exc.retry_after_s
                raise
        await recording.feed(data)
        self._uncommitted_ms += len(data) / bytes_per_ms(self.config.format)

    async def _start(self) -> Recording:
        """The stream opens with the first audio, with the settings in force then."""
        self.renderer.new_recording()
        return await self.conn.start_recording(
            language=self.config.language,
            task="transcribe",
            model=self.config.served_model(self.settings.model),
            fmt=self.config.format,
            prompt=self.config.prompt,
            vad=self.config.vad(),
            speech_events=True,
            diarize=self.config.diarize,
            known_speakers=self.config.known_speakers,
        )

    async def _resume(self, message: dict[str, Any]) -> None:
        """Continue a recording whose connection dropped: the missed items' results come
        again, and ``x_session.resumed`` says from which byte of its audio to append on."""
        session_id, token, received = (
            message.get("session_id"),
            message.get("resume_token"),
            message.get("finals_received", 0),
        )
        if not isinstance(session_id, str) or not isinstance(token, str):
            raise ConfigError(ErrorCode.MISSING_FIELD, "'session_id' and 'resume_token' are required")
        if not isinstance(received, int) or isinstance(received, bool) or received < 0:
            raise ConfigError(ErrorCode.INVALID_FIELD, "'finals_received' must be a count", "finals_received")
        self.renderer.new_recording()
        await self.conn.resume_recording(session_id, token, received)

    async def _reconfigure(self, config: TranscriptionConfig) -> None:
        """Apply to the audio still to come: the running stream changes its settings at
        this point of the audio (no new stream, the session's audio timeline goes on).
        Speaker labels and known speakers are the stream's from its first audio on: a
        session's voices are one set, so they cannot be switched on or off in its middle."""
        recording = self.conn.live_recording
        if recording is not None and (
            config.diarize != self.config.diarize or config.known_speakers != self.config.known_speakers
        ):
            raise ConfigError(
                "invalid_value",
                "Speaker labels and known speakers are set before the session's first audio",
                "session.audio.input.transcription.model",
            )
        self.config = config
        if recording is not None:
            await recording.control(
                sp.Configure(
                    language=config.language,
                    model=config.served_model(self.settings.model),
                    format=config.format,
                    prompt=config.prompt,
                    vad=config.vad(),
                )
            )


def _parse(text: str) -> Any:
    """The frame's JSON, or None when it is not JSON."""
    try:
        return loads_untrusted(text)
    except ValueError:
        return None


async def realtime_endpoint(websocket: WebSocket) -> None:
    await serve(websocket, RealtimeProtocol)
