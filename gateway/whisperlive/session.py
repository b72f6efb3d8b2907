"""One WhisperLive connection at ``/``: the options message, then float32 (or int16)
16 kHz PCM as binary frames until ``END_OF_AUDIO``; its typed events are rendered by
:class:`gateway.renderers.whisperlive.WhisperLiveRenderer`.

A WhisperLive client stops sending when its file or microphone ends and waits for the
text to settle. This service ends an utterance at a pause the speech detector hears, so
audio that simply stops would leave the last utterance open; after :data:`IDLE_COMMIT_S`
without audio the open utterance is committed, as WhisperLive's own server completes
its last segment when no new audio comes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.websockets import WebSocket

from gateway import events
from gateway.connection import Connection
from gateway.model_loading import validate_request
from gateway.renderers.whisperlive import WhisperLiveRenderer
from gateway.whisperlive.options import ClientOptions, parse_options, uid_of
from gateway.ws import serve
from shared import metrics, protocol
from shared import stream_protocol as sp
from shared.errors import ErrorCode
from shared.protocol import ProtocolError

END_OF_AUDIO = b"END_OF_AUDIO"
IDLE_COMMIT_S = 1.0
CLOSE_NORMAL = 1000
#: WhisperLive's ``WAIT`` is in minutes; a refusal without an estimate says this long.
DEFAULT_WAIT_S = 30.0


class WhisperLiveProtocol:
    def __init__(self, connection: Connection) -> None:
        self.conn = connection
        self.renderer = WhisperLiveRenderer()
        self.options: ClientOptions | None = None
        self._ending = False
        self._last_audio: float | None = None  # monotonic time of the last audio frame
        self._closing = False

    async def opened(self) -> None:
        return None  # the client speaks first, with its options

    def render(self, event: events.Event) -> list[dict[str, Any]]:
        out = self.renderer.render(event)
        match event:
            case events.RecordingStopped() if self._ending:
                self._close(CLOSE_NORMAL)
            case events.RecordingFailed():
                self._close(CLOSE_NORMAL)
        return out

    def _close(self, code: int) -> None:
        if not self._closing:
            self._closing = True
            self.conn.spawn_close(code)

    def rate_exempt(self, message: dict[str, Any]) -> bool:
        return message.get("bytes") is not None and self.options is not None

    async def on_text(self, text: str) -> None:
        metrics.WS_MESSAGES.labels(command="options" if self.options is None else "unknown").inc()
        if self.options is not None:
            self.conn.push(self.renderer.status("WARNING", "Only the first message carries options; ignored"))
            return
        self.renderer.uid = uid_of(text)
        try:
            options = parse_options(text)
            self.renderer.uid = options.uid
            model = self.conn.settings.model
            language = validate_request(model, options.language, options.task)
            self.renderer.send_last_n = options.send_last_n
            self.renderer.report_language = language is None
            await self.conn.start_recording(
                language=language, task=options.task, model=model, fmt=options.format, prompt=options.prompt
            )
        except ProtocolError as exc:
            self._refuse(exc)
            return
        self.options = options
        self.conn.push(self.renderer.ready())
        self.conn.spawn(self._commit_when_idle())

    def _refuse(self, exc: ProtocolError) -> None:
        """Admission's ``busy`` is WhisperLive's ``WAIT`` (minutes, which its client
        prints); anything else is ``ERROR``. Either way the connection closes, as
        WhisperLive's server closes a client it does not serve."""
        if exc.code in (ErrorCode.BUSY, ErrorCode.TOO_MANY_CLIENTS, ErrorCode.NO_WORKERS):
            wait_s = getattr(exc, "retry_after_s", None) or DEFAULT_WAIT_S
            self.conn.push(self.renderer.status("WAIT", round(float(wait_s) / 60, 3)))
        else:
            self.conn.push(self.renderer.status("ERROR", f"{exc.code}: {exc.message}"))
        self._close(CLOSE_NORMAL)

    async def on_binary(self, data: bytes) -> None:
        metrics.WS_MESSAGES.labels(command="binary").inc()
        if self.options is None:
            self.conn.push(
                self.renderer.status("ERROR", "invalid_message: send the options message before any audio")
            )
            return
        if data == END_OF_AUDIO:
            await self._end_of_audio()
            return
        try:
            protocol.check_audio_size(data, self.conn.settings.max_audio_bytes)
        except ProtocolError as exc:
            self.conn.push(self.renderer.status("ERROR", f"{exc.code}: {exc.message}"))
            return
        if (recording := self.conn.live_recording) is not None and not self._ending:
            self._last_audio = time.monotonic()
            await recording.feed(data)

    async def _end_of_audio(self) -> None:
        """Flush the open utterance; ``DISCONNECT`` and the close follow the last final."""
        if self._ending:
            return
        self._ending = True
        if (recording := self.conn.live_recording) is None:
            self.conn.push({"uid": self.renderer.uid, "message": "DISCONNECT"})
            self._close(CLOSE_NORMAL)
            return
        await recording.stop()

    async def _commit_when_idle(self) -> None:
        while not self._ending:
            await asyncio.sleep(IDLE_COMMIT_S / 4)
            last = self._last_audio
            if last is None or time.monotonic() - last < IDLE_COMMIT_S:
                continue
            self._last_audio = None  # once per silence: the next audio arms it again
            if (recording := self.conn.live_recording) is not None and not self._ending:
                await recording.control(sp.Commit())


async def whisperlive_endpoint(websocket: WebSocket) -> None:
    await serve(websocket, WhisperLiveProtocol)
