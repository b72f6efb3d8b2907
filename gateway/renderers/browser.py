"""The browser protocol ``/ws`` (ARCHITECTURE.md) as a renderer of :mod:`gateway.events`.

Its transcript and error messages are the workers' own reply shape, so most events carry
the message already; this module decides which events the protocol shows at all (speech
start/stop and commits have no ``/ws`` message) and words the status messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway import events
from shared import protocol


@dataclass
class BrowserRenderer:
    model: str  # the connection's current model, named in status messages

    def render(self, event: events.Event) -> list[dict[str, Any]]:
        match event:
            case events.RecordingStarted():
                return [
                    protocol.status(
                        "Recording started",
                        recording=True,
                        model=event.model,
                        stream_id=event.stream_id,
                        session_id=event.session_id,
                        resume_token=event.resume_token,
                        resume_window_s=event.resume_window_s,
                    )
                ]
            case events.RecordingResumed():
                return [
                    protocol.status(
                        "Recording resumed",
                        recording=True,
                        model=event.model,
                        session_id=event.session_id,
                        audio_offset=event.audio_offset,
                        replayed=event.replayed,
                    )
                ]
            case events.PartialText() | events.FinalText():
                return [event.message]
            case events.UtteranceFailed():
                return [protocol.error(event.code, event.message, utterance_id=event.utterance_id)]
            case events.RecordingFailed():
                return [protocol.error(event.code, event.message)]
            case events.PartialsPaused():
                # Named like the Redis states: a client switches on ``message`` or ``partials``.
                return [protocol.status("partials_paused", partials=False, model=self.model)]
            case events.PartialsResumed():
                return [protocol.status("partials_resumed", partials=True, model=self.model)]
            case events.RecordingStopped():
                # ``finals``: how many utterances were answered, so a client can tell it has them all.
                return [
                    protocol.status(
                        "Recording stopped", recording=False, model=event.model, finals=event.finals
                    )
                ]
            case events.FileReceived():
                return [protocol.status("Processing audio", processing=True, request_id=event.request_id)]
            case events.FileQueued():
                return [
                    protocol.status(
                        "Audio queued",
                        processing=True,
                        pieces=event.pieces,
                        duration_s=round(event.duration_s, 3),
                        request_id=event.request_id,
                    )
                ]
            case events.PieceDone():
                return [_with_request_id(event.message, event.request_id)]
            case events.PieceFailed():
                error = protocol.error(event.code, event.message, utterance_id=event.utterance_id)
                return [_with_request_id(error, event.request_id)]
            case events.FileDone():
                return [protocol.status("Processing complete", processing=False, request_id=event.request_id)]
            case events.RequestError():
                return [
                    protocol.error(
                        event.code,
                        event.message,
                        request_id=event.request_id,
                        retry_after_s=event.retry_after_s,
                    )
                ]
            case events.FileRefused():
                return [protocol.error(event.code, event.message, request_id=event.request_id)]
            case events.RedisState():
                state = "reconnected" if event.connected else "reconnecting"
                return [protocol.status(state, redis=event.connected, model=self.model)]
        return []  # speech events, commits, cleared utterances: not part of /ws


def _with_request_id(message: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    return {**message, "request_id": request_id} if request_id is not None else message
