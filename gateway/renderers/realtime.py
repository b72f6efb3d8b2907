"""OpenAI's Realtime transcription events (``/v1/realtime``) as a renderer of
:mod:`gateway.events`.

- speech start/stop → ``input_audio_buffer.speech_started`` / ``speech_stopped`` (server VAD only)
- an utterance queued → ``input_audio_buffer.committed`` and ``conversation.item.added``, once per item
  (``beta``: ``conversation.item.created``, the beta API's event; it has no ``item.done``)
- partial text → ``conversation.item.input_audio_transcription.delta`` (see :mod:`gateway.realtime.deltas`)
- final text → the last ``delta``, ``...completed``, ``conversation.item.done``; with the
  transcription model ``gpt-4o-transcribe-diarize``, ``completed`` carries ``speaker``
  (our extension: OpenAI's Realtime API labels no speakers)
- a commit whose audio held no speech (``CommitEmpty``; the gateway already refused one
  of under 100 ms) → an item of its own, ``completed`` with an empty transcript, as OpenAI's
- an utterance failed → ``...failed``; any other error → ``error``
- Redis lost → ``error`` ``redis_unavailable``; recording and file statuses have no counterpart
- with ``resumable`` (our extension, asked for in the URL): the recording's resume
  credentials → ``x_session.resumable``, a resume → ``x_session.resumed``
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import events
from gateway.realtime import events as rt
from gateway.realtime.deltas import DeltaTracker
from shared.protocol import ErrorCode


@dataclass
class RealtimeRenderer:
    server_vad: Callable[[], bool]  # whether the session uses turn detection now
    resumable: bool = False  # the client asked for the resume extension
    #: The client speaks the beta interface (``OpenAI-Beta: realtime=v1``, as the SDK's
    #: ``beta.realtime`` client sends): items are announced with the beta's events.
    beta: bool = False
    deltas: DeltaTracker = field(default_factory=DeltaTracker)
    _items: dict[int, str] = field(default_factory=dict)  # utterance index -> item id
    _committed: set[int] = field(default_factory=set)
    _last_item: str | None = None

    def new_recording(self) -> None:
        """Utterance numbers start again with a new stream; the items so far stay named."""
        self._items.clear()
        self._committed.clear()

    def render(self, event: events.Event) -> list[dict[str, Any]]:
        match event:
            case events.RecordingStarted(session_id=str(session_id)) if self.resumable:
                return [
                    rt.event(
                        "x_session.resumable",
                        session_id=session_id,
                        resume_token=event.resume_token,
                        resume_window_s=event.resume_window_s,
                    )
                ]
            case events.RecordingResumed():
                return [
                    rt.event(
                        "x_session.resumed",
                        session_id=event.session_id,
                        audio_offset=event.audio_offset,
                        replayed=event.replayed,
                    )
                ]
            case events.SpeechStarted():
                self._items[event.index] = rt.new_id("item")  # a fresh item, also after a dropped blip
                if not self.server_vad():
                    return []
                return [
                    rt.event(
                        "input_audio_buffer.speech_started",
                        item_id=self._items[event.index],
                        audio_start_ms=event.audio_ms,
                    )
                ]
            case events.SpeechStopped():
                out = []
                if self.server_vad():
                    out.append(
                        rt.event(
                            "input_audio_buffer.speech_stopped",
                            item_id=self._item(event.index),
                            audio_end_ms=event.audio_ms,
                        )
                    )
                if not event.kept:  # too short to be speech: no item follows
                    self.deltas.forget(self._items.pop(event.index, ""))
                return out
            case events.UtteranceQueued():
                return self._commit(event.index)
            case events.UtteranceCleared():
                self.deltas.forget(self._items.pop(event.index, ""))
                return []
            case events.CommitEmpty():
                return self._empty_item()
            case events.PartialText():
                return self._partial(event)
            case events.FinalText():
                return self._final(event)
            case events.UtteranceFailed():
                out = self._commit(event.index)
                item_id = self._item(event.index)
                self.deltas.forget(item_id)
                error = {"type": "server_error", "code": event.code, "message": event.message, "param": None}
                return [
                    *out,
                    rt.event(
                        "conversation.item.input_audio_transcription.failed",
                        item_id=item_id,
                        content_index=0,
                        error=error,
                    ),
                ]
            case events.RecordingFailed() | events.FileRefused() | events.PieceFailed():
                return [rt.error(event.code, event.message)]
            case events.RequestError():
                return [
                    rt.error(
                        event.code,
                        event.message,
                        param=event.param,
                        event_id=event.event_id,
                        retry_after_s=event.retry_after_s,
                    )
                ]
            case events.RedisState(connected=False):
                return [rt.error(ErrorCode.REDIS_UNAVAILABLE, "reconnecting", status=503)]
        return []

    def _item(self, index: int) -> str:
        if index not in self._items:
            self._items[index] = rt.new_id("item")
        return self._items[index]

    def _commit(self, index: int) -> list[dict[str, Any]]:
        """``committed`` and ``conversation.item.added`` once per item, before its results."""
        if index in self._committed:
            return []
        self._committed.add(index)
        return self._announce(self._item(index))

    def _announce(self, item_id: str) -> list[dict[str, Any]]:
        """The pair every item opens with, chained after the previous item."""
        out = [
            rt.event("input_audio_buffer.committed", item_id=item_id, previous_item_id=self._last_item),
            rt.event(
                "conversation.item.created" if self.beta else "conversation.item.added",
                item=rt.user_item(item_id, None, "completed"),
                previous_item_id=self._last_item,
            ),
        ]
        self._last_item = item_id
        return out

    def _done(self, item_id: str, transcript: str) -> list[dict[str, Any]]:
        """GA's ``conversation.item.done`` (the beta API has no such event)."""
        if self.beta:
            return []
        return [rt.event("conversation.item.done", item=rt.user_item(item_id, transcript, "completed"))]

    def _empty_item(self) -> list[dict[str, Any]]:
        """A committed buffer without speech: an item like any other, whose transcript is
        empty (the VAD gate keeps the model from inventing words from silence)."""
        item_id = rt.new_id("item")
        return [
            *self._announce(item_id),
            rt.event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript="",
                usage={"type": "duration", "seconds": 0.0},
            ),
            *self._done(item_id, ""),
        ]

    def _partial(self, event: events.PartialText) -> list[dict[str, Any]]:
        item_id = self._items.get(event.index)
        if item_id is None and not self.server_vad():
            item_id = self._item(event.index)  # no speech events without VAD: name it now
        if item_id is None:
            return []  # its audio was cleared
        delta = self.deltas.partial(item_id, event.text, whole=event.whole, seconds=event.seconds)
        return [] if delta is None else [self._delta(item_id, delta)]

    def _final(self, event: events.FinalText) -> list[dict[str, Any]]:
        out = self._commit(event.index)
        item_id = self._item(event.index)
        if (delta := self.deltas.final(item_id, event.text)) is not None:
            out.append(self._delta(item_id, delta))
        out.append(
            rt.event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=event.text,
                usage={"type": "duration", "seconds": round(event.seconds, 3)},
                # our extension, with the transcription model gpt-4o-transcribe-diarize
                **({"speaker": speaker} if (speaker := event.message.get("speaker")) else {}),
            )
        )
        out += self._done(item_id, event.text)
        return out

    @staticmethod
    def _delta(item_id: str, delta: str) -> dict[str, Any]:
        return rt.event(
            "conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0, delta=delta
        )
