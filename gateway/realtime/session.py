"""One ``/v1/realtime`` connection: OpenAI Realtime transcription events in and out, the
browser session's machinery underneath.

:class:`RealtimeSession` is a :class:`gateway.session.Session` (same outbox, reply routing,
rate limit, Redis-state handling, stuck-final expiry, metrics) whose recording is fed from
``input_audio_buffer.append`` instead of binary frames, and whose outgoing messages are
translated from the ``/ws`` shapes the shared code emits into Realtime server events:

- partial ``transcript`` -> ``conversation.item.input_audio_transcription.delta``
- final ``transcript`` -> last ``delta``, ``...completed``, ``conversation.item.done``
- ``error`` for an utterance -> ``...failed``; any other ``error`` -> ``error``
- the audio service's speech start/stop and queued finals -> ``input_audio_buffer.*``
  and ``conversation.item.added``
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import structlog
from starlette.websockets import WebSocket

from gateway.context import GatewayContext
from gateway.realtime import events
from gateway.realtime.config import (
    ConfigError,
    TranscriptionConfig,
    apply_beta_update,
    apply_ga_update,
    default_config,
)
from gateway.realtime.deltas import DeltaTracker
from gateway.recording import Recording
from gateway.session import Session
from gateway.ws import serve
from shared import metrics, protocol
from shared.jobs import live_utterance_index
from shared.protocol import ErrorCode, ProtocolError, loads_untrusted

log = structlog.get_logger()

CLIENT_EVENTS = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)


class RealtimeSession(Session):
    def __init__(self, websocket: WebSocket, ctx: GatewayContext) -> None:
        super().__init__(websocket, ctx)
        self.config: TranscriptionConfig = default_config(
            websocket.query_params.get("model"), ctx.settings.model
        )
        self.deltas = DeltaTracker()
        self._items: dict[int, str] = {}  # utterance index -> item id, for the current recording
        self._committed: set[int] = set()
        self._last_item: str | None = None
        self._reply_kind: str | None = None  # the job kind of the reply being routed
        self._parsed: tuple[str, Any] = ("", None)  # the last text frame and its JSON

    async def run(self) -> None:
        self._push(events.event("session.created", session=self.config.ga_session()))
        await super().run()

    def _rate_exempt(self, message: dict[str, Any]) -> bool:
        """Audio appends are the stream itself, so (like ``/ws`` binary frames while
        recording) they are not counted against the per-minute message limit."""
        text = message.get("text")
        if not isinstance(text, str):
            return False
        self._parsed = (text, _parse(text))  # parsed once: _on_text takes it from here
        event = self._parsed[1]
        return isinstance(event, dict) and event.get("type") == "input_audio_buffer.append"

    def _push(self, event: dict[str, Any]) -> None:
        self.outbox.put_nowait(event)

    # --- client events ------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
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
            self._error(exc.code, exc.message, param=exc.param, event_id=event_id)
        except ProtocolError as exc:
            self._error(exc.code, exc.message, event_id=event_id)

    async def _dispatch_event(self, kind: str, message: dict[str, Any]) -> None:
        default_model = self.settings.model
        match kind:
            case "input_audio_buffer.append":
                await self._append(message.get("audio"))
            case "session.update":
                await self._reconfigure(apply_ga_update(self.config, message.get("session"), default_model))
                self._push(events.event("session.updated", session=self.config.ga_session()))
            case "transcription_session.update":
                await self._reconfigure(apply_beta_update(self.config, message.get("session"), default_model))
                self._push(events.event("transcription_session.updated", session=self.config.beta_session()))
            case "input_audio_buffer.commit":
                if not self._recording_live():
                    raise ConfigError(
                        "input_audio_buffer_commit_empty", "Nothing to commit: the audio buffer is empty"
                    )
                assert self.recording is not None
                await self.recording.control({"type": "commit"})
            case "input_audio_buffer.clear":
                if self.recording is not None and self._recording_live():
                    await self.recording.control({"type": "clear"})
                self._push(events.event("input_audio_buffer.cleared"))
            case _:
                raise ConfigError(
                    "invalid_event",
                    f"Unknown or unsupported event type {kind[:60]!r}; this server takes: "
                    + ", ".join(CLIENT_EVENTS),
                    "type",
                )

    async def _on_binary(self, data: bytes) -> None:
        self._error(
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
        if not self._recording_live():
            await self._start()
        assert self.recording is not None
        await self.recording.feed(data)

    async def _start(self) -> None:
        """The stream opens with the first audio, with the settings in force then."""
        if self.recording is not None:
            await self.recording.close()
        self._items.clear()
        self._committed.clear()
        model = self.config.served_model(self.settings.model)
        recording = Recording(
            self.ctx,
            self.reply_channel,
            self.send,
            language=self.config.language,
            task="transcribe",
            model=model,
            fmt=self.config.format,
            options=self.config.stream_options(),
            on_stream_event=self._on_stream_event,
        )
        await recording.start()
        self.recording = recording
        self.model = model

    async def _reconfigure(self, config: TranscriptionConfig) -> None:
        """Apply to the audio still to come: the running stream changes its settings at
        this point of the audio (no new stream, the session's audio timeline goes on)."""
        self.config = config
        if self.recording is not None and self._recording_live():
            self.model = config.served_model(self.settings.model)
            await self.recording.control(
                {
                    "type": "configure",
                    "language": config.language,
                    "model": self.model,
                    "format": config.format,
                    **config.stream_options(),
                }
            )

    def _internal_error(self, message: str) -> None:
        self._error(ErrorCode.INTERNAL_ERROR, message)

    def _error(
        self, code: str, message: str, *, param: str | None = None, event_id: str | None = None
    ) -> None:
        metrics.ERRORS_SENT.labels(code=str(code)).inc()
        self._push(events.error(str(code), message, param=param, event_id=event_id))

    # --- items ------------------------------------------------------------------------------

    def _item(self, index: int) -> str:
        if index not in self._items:
            self._items[index] = events.new_id("item")
        return self._items[index]

    def _commit_item(self, index: int) -> str:
        """``committed`` and ``conversation.item.added`` once per item, before its results."""
        item_id = self._item(index)
        if index not in self._committed:
            self._committed.add(index)
            self._push(
                events.event(
                    "input_audio_buffer.committed", item_id=item_id, previous_item_id=self._last_item
                )
            )
            self._push(
                events.event(
                    "conversation.item.added",
                    item=events.user_item(item_id, None, "completed"),
                    previous_item_id=self._last_item,
                )
            )
            self._last_item = item_id
        return item_id

    def _on_stream_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        index = int(event.get("index", -1))
        vad = self.config.turn_detection is not None
        if kind == "speech_started":
            self._items[index] = events.new_id("item")  # a fresh item, also after a dropped blip
            if vad:
                self._push(
                    events.event(
                        "input_audio_buffer.speech_started",
                        item_id=self._items[index],
                        audio_start_ms=int(event.get("audio_ms", 0)),
                    )
                )
        elif kind == "speech_stopped":
            if vad:
                self._push(
                    events.event(
                        "input_audio_buffer.speech_stopped",
                        item_id=self._item(index),
                        audio_end_ms=int(event.get("audio_ms", 0)),
                    )
                )
            if not event.get("kept", True):  # too short to be speech: no item follows
                self.deltas.forget(self._items.pop(index, ""))
        elif kind == "final_queued":
            self._commit_item(index)
        elif kind == "cleared":
            self.deltas.forget(self._items.pop(index, ""))
        elif kind == "commit_empty":
            self._error(
                "input_audio_buffer_commit_empty", "Nothing to commit: no speech since the last commit"
            )

    # --- results (the /ws shapes the shared machinery emits) -----------------------------------

    def _on_reply(self, reply: dict[str, Any]) -> None:
        """Note the job kind while the recording routes the reply: the ``/ws`` message it
        emits calls a candidate final a partial, but a candidate's text may go out whole."""
        self._reply_kind = reply.get("kind")
        try:
            super()._on_reply(reply)
        finally:
            self._reply_kind = None

    def send(self, message: dict[str, Any]) -> None:
        metrics.record_client_message(message)
        kind = message.get("type")
        index = live_utterance_index(message.get("utterance_id"))
        if kind == "transcript" and index is not None:
            self._transcript(index, message)
        elif kind == "error" and index is not None:
            item_id = self._commit_item(index)
            self.deltas.forget(item_id)
            self._push(
                events.event(
                    "conversation.item.input_audio_transcription.failed",
                    item_id=item_id,
                    content_index=0,
                    error={
                        "type": "server_error",
                        "code": message.get("code"),
                        "message": message.get("message"),
                        "param": None,
                    },
                )
            )
        elif kind == "error":
            self._push(events.error(str(message.get("code")), str(message.get("message", ""))))
        elif kind == "status" and message.get("redis") is False:
            self._push(events.error(ErrorCode.REDIS_UNAVAILABLE, str(message.get("message", "")), status=503))
        # other statuses (recording started/stopped, Redis back) have no Realtime counterpart

    def _transcript(self, index: int, message: dict[str, Any]) -> None:
        text = str(message.get("transcript") or "").strip()
        if not message.get("final"):
            item_id = self._items.get(index)
            if item_id is None and self.config.turn_detection is None:
                item_id = self._item(index)  # no speech events without VAD: name it now
            if item_id is None:
                return  # its audio was cleared
            whole = self._reply_kind == "candidate"
            if (delta := self.deltas.partial(item_id, text, whole=whole)) is not None:
                self._delta(item_id, delta)
            return
        item_id = self._commit_item(index)
        if (delta := self.deltas.final(item_id, text)) is not None:
            self._delta(item_id, delta)
        seconds = max(0.0, float(message.get("end") or 0.0) - float(message.get("start") or 0.0))
        self._push(
            events.event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=text,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            )
        )
        self._push(events.event("conversation.item.done", item=events.user_item(item_id, text, "completed")))

    def _delta(self, item_id: str, delta: str) -> None:
        self._push(
            events.event(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=delta,
            )
        )


def _parse(text: str) -> Any:
    """The frame's JSON, or None when it is not JSON."""
    try:
        return loads_untrusted(text)
    except ValueError:
        return None


async def realtime_endpoint(websocket: WebSocket) -> None:
    await serve(websocket, RealtimeSession)
