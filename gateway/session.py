"""The browser protocol on ``/ws`` (ARCHITECTURE.md): its commands in, its messages out
(rendered by :class:`gateway.renderers.browser.BrowserRenderer`), over a
:class:`gateway.connection.Connection`."""

from __future__ import annotations

from typing import Any

from gateway import events
from gateway.connection import Connection
from gateway.known_speakers import KnownSpeakerError, parse_known_speakers
from gateway.model_loading import load_across_pool, validate_model_name, validate_request
from gateway.renderers.browser import BrowserRenderer
from gateway.speaker_labels import SpeakerHints
from shared import metrics, protocol
from shared.heartbeats import live_workers
from shared.protocol import ErrorCode, ProtocolError


class BrowserProtocol:
    def __init__(self, connection: Connection) -> None:
        self.conn = connection
        self.settings = connection.settings
        self.language: str | None = None
        self.renderer = BrowserRenderer(model=connection.settings.model)

    @property
    def model(self) -> str:
        return self.renderer.model

    async def opened(self) -> None:
        return None

    def render(self, event: events.Event) -> list[dict[str, Any]]:
        return self.renderer.render(event)

    def rate_exempt(self, message: dict[str, Any]) -> bool:
        """Live audio is not counted against the message rate: MediaRecorder sends four
        chunks a second on its own."""
        return message.get("bytes") is not None and self.conn.recording_live

    # --- client messages --------------------------------------------------------------

    async def on_text(self, text: str) -> None:
        try:
            msg = protocol.parse_client_message(text)
            metrics.WS_MESSAGES.labels(command=msg.command).inc()
            await self._dispatch(msg)
        except ProtocolError as exc:
            self.conn.error(exc.code, exc.message, request_id=exc.request_id, retry_after_s=exc.retry_after_s)

    async def _dispatch(self, msg: protocol.ClientMessage) -> None:
        match msg:
            case protocol.Ping():
                self.conn.push(protocol.pong())
            case protocol.GetStatus():
                self.conn.spawn(self._send_status())
            case protocol.ProcessAudio():
                audio = protocol.decode_base64_audio(msg.audio_data, self.settings.max_audio_bytes)
                self.conn.files.accept(
                    audio,
                    language=msg.language,
                    task=msg.task,
                    model=msg.model or self.model,
                    client_request_id=msg.request_id,
                    speakers=_speaker_hints(msg),
                )
            case protocol.LoadModel():
                validate_model_name(msg.model_name)
                self.conn.spawn(self._load_model(msg.model_name))
            case protocol.StartRecording():
                await self._start_recording(msg)
            case protocol.Resume():
                recording = await self.conn.resume_recording(
                    msg.session_id, msg.resume_token, msg.finals_received
                )
                self.renderer.model = recording.model
            case protocol.StopRecording():
                if (recording := self.conn.live_recording) is None:  # nothing to flush
                    self.conn.emit(events.RecordingStopped(self.model, 0))
                else:
                    await recording.stop()

    async def on_binary(self, data: bytes) -> None:
        metrics.WS_MESSAGES.labels(command="binary").inc()
        try:
            protocol.check_audio_size(data, self.settings.max_audio_bytes)
            if (recording := self.conn.live_recording) is not None:
                await recording.feed(data)
                return
            self.conn.files.accept(
                data, language=self.language, task="transcribe", model=self.model, client_request_id=None
            )
        except ProtocolError as exc:
            self.conn.error(exc.code, exc.message)

    # --- live recording -----------------------------------------------------------------

    async def _start_recording(self, msg: protocol.StartRecording) -> None:
        if self.conn.recording_live:
            raise ProtocolError(ErrorCode.ALREADY_RECORDING, "A recording is already running; stop it first")
        model = msg.model or self.model
        language = validate_request(model, msg.language, msg.task)
        await self.conn.start_recording(
            language=language,
            task=msg.task,
            model=model,
            fmt=msg.format,
            diarize=msg.diarize,
            known_speakers=_known_speakers(msg),
        )
        self.language = language

    # --- models and status ----------------------------------------------------------------

    async def _load_model(self, name: str) -> None:
        async def progress(message: dict[str, Any]) -> None:
            self.conn.push(message)

        try:
            loaded = await load_across_pool(self.conn.ctx, name, progress)
        except ProtocolError as exc:
            self.conn.error(exc.code, exc.message)
            return
        self.renderer.model = name
        self.conn.push(loaded)

    async def _send_status(self) -> None:
        try:
            workers = len(await live_workers(self.conn.ctx.redis))
        except Exception:
            workers = 0
        self.conn.push(
            protocol.status(
                "Ready" if workers else "No transcription workers are running",
                recording=self.conn.recording_live,
                processing=bool(self.conn.files.pending),
                model=self.model,
                workers=workers,
            )
        )


def _speaker_hints(msg: protocol.ProcessAudio) -> SpeakerHints | None:
    """``diarize: true`` on process_audio: the file's finals carry speaker labels."""
    if not msg.diarize:
        return None
    lo, hi = msg.min_speakers, msg.max_speakers
    if lo is not None and hi is not None and lo > hi:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "min_speakers is greater than max_speakers")
    return SpeakerHints([], lo, hi)


def _known_speakers(msg: protocol.StartRecording) -> list[tuple[str, bytes]]:
    """``known_speaker_names`` / ``known_speaker_references`` of a live recording, checked."""
    names, clips = msg.known_speaker_names, msg.known_speaker_references
    if not names and not clips:
        return []
    if not msg.diarize:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "Known speakers need speaker labels: send diarize: true")
    try:
        return parse_known_speakers(names, clips)
    except KnownSpeakerError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, exc.message) from None
