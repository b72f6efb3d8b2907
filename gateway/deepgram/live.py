"""One Deepgram live connection on ``/v1/listen``: the query string says how the audio
is encoded and what to send back, binary frames are the audio, and the text frames are
Deepgram's controls (``KeepAlive``, ``Finalize``, ``CloseStream``). Its typed events are
rendered by :class:`gateway.renderers.deepgram.DeepgramRenderer`.

The recording starts as the connection opens (Deepgram's clients send audio at once and
may send nothing else), with the options read from the URL; a bad option is refused at
the handshake with HTTP 400 and Deepgram's JSON body, as Deepgram does.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.responses import Response
from starlette.websockets import WebSocket

from gateway import events
from gateway.connection import Connection
from gateway.deepgram.errors import DeepgramError, close_code_for, error_frame
from gateway.deepgram.options import ListenOptions, parse_options
from gateway.model_loading import validate_request
from gateway.renderers.deepgram import DeepgramRenderer
from gateway.ws import serve
from shared import metrics, protocol
from shared import stream_protocol as sp
from shared.errors import ErrorCode
from shared.protocol import ProtocolError, loads_untrusted

log = structlog.get_logger()

CLIENT_MESSAGES = ("KeepAlive", "Finalize", "CloseStream")
CLOSE_NORMAL = 1000


class DeepgramProtocol:
    def __init__(
        self, connection: Connection, options: ListenOptions, model: str, language: str | None
    ) -> None:
        self.conn = connection
        self.options = options
        self.model = model
        self.language = language
        self.renderer = DeepgramRenderer(options, model)
        self._closing = False  # CloseStream: close once every final is out
        self._close_code: int | None = None  # the close already on its way, if any

    async def opened(self) -> None:
        vad = (
            sp.VadSettings(pause_s=self.options.endpointing_ms / 1000)
            if self.options.endpointing_ms
            else None
        )
        try:
            await self.conn.start_recording(
                language=self.language,
                task="transcribe",
                model=self.model,
                fmt=self.options.format,
                vad=vad,
                speech_events=self.options.vad_events,
            )
        except ProtocolError as exc:
            self.refuse(exc)

    def refuse(self, exc: ProtocolError) -> None:
        """The stream cannot start (admission said ``busy``, the audio service is away):
        Deepgram's ``Error`` frame, then a close that says whether to try again."""
        retry = getattr(exc, "retry_after_s", None)
        extra = {"retry_after_s": retry} if retry is not None else {}
        self.conn.push(error_frame(str(exc.code), exc.message, **extra))
        self._close(close_code_for(str(exc.code)))

    def render(self, event: events.Event) -> list[dict[str, Any]]:
        out = self.renderer.render(event)
        match event:
            case events.RecordingStopped() if self._closing:
                self._close(CLOSE_NORMAL)
            case events.RecordingFailed():
                self._close(close_code_for(event.code))
            case events.CommitEmpty():
                self.renderer.finalize_pending = 0  # nothing was open: no final answers it
        return out

    def _close(self, code: int) -> None:
        """The first reason to close is the one the client sees (a failed stream's 1008
        is not overwritten by the normal close that its end would also bring)."""
        if self._close_code is None:
            self._close_code = code
            self.conn.spawn_close(code)

    def rate_exempt(self, message: dict[str, Any]) -> bool:
        """Audio frames are the stream itself; KeepAlive is sent every few seconds."""
        return message.get("bytes") is not None or '"KeepAlive"' in (message.get("text") or "")

    async def on_binary(self, data: bytes) -> None:
        metrics.WS_MESSAGES.labels(command="binary").inc()
        if not data:  # the SDKs' older way to say CloseStream
            await self._close_stream()
            return
        if len(data) > self.conn.settings.max_audio_bytes:
            self.conn.error(
                ErrorCode.AUDIO_TOO_LARGE,
                protocol.too_large_message(len(data), self.conn.settings.max_audio_bytes),
            )
            return
        if (recording := self.conn.live_recording) is not None and not self._closing:
            self.renderer.fed(data)
            await recording.feed(data)

    async def on_text(self, text: str) -> None:
        try:
            message = loads_untrusted(text)
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        metrics.WS_MESSAGES.labels(command=kind if kind in CLIENT_MESSAGES else "unknown").inc()
        match kind:
            case "KeepAlive":
                return
            case "Finalize":
                if (recording := self.conn.live_recording) is not None:
                    self.renderer.finalize_pending += 1
                    await recording.control(sp.Commit())
            case "CloseStream":
                await self._close_stream()
            case _:
                self.conn.push(
                    error_frame(
                        ErrorCode.INVALID_MESSAGE,
                        "Unknown or unreadable message; this server takes: " + ", ".join(CLIENT_MESSAGES),
                        message=text[:200],
                    )
                )

    async def _close_stream(self) -> None:
        """Flush the open utterance; Metadata and the close follow the last final."""
        if self._closing:
            return
        self._closing = True
        if (recording := self.conn.live_recording) is None:
            self.conn.push(self.renderer.metadata())
            self._close(CLOSE_NORMAL)
            return
        await recording.stop()


async def listen_websocket(websocket: WebSocket) -> None:
    try:
        options = parse_options(websocket.query_params, live=True)
        model = options.model or websocket.app.state.ctx.settings.model
        try:
            language = validate_request(model, options.language, "transcribe")
        except ProtocolError as exc:
            raise DeepgramError(exc.code, exc.message, status=400) from None
    except DeepgramError as exc:
        await deny(websocket, exc)
        return
    await serve(websocket, lambda conn: DeepgramProtocol(conn, options, model, language))


async def deny(websocket: WebSocket, exc: DeepgramError) -> None:
    """Refuse the handshake with Deepgram's HTTP status and JSON body (where the server
    supports ASGI's denial responses; otherwise a close frame that says why)."""
    response: Response = exc.response()
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(1008, exc.message[:120])
