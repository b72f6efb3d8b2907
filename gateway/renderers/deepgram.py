"""Deepgram's live ``/v1/listen`` messages as a renderer of :mod:`gateway.events`.

- partial text → ``Results`` ``is_final: false`` (only with ``interim_results=true``)
- final text → ``Results`` ``is_final: true``; ``speech_final: true`` when a pause ended
  the utterance, ``from_finalize: true`` when the client's ``Finalize`` did; then
  ``UtteranceEnd`` when ``utterance_end_ms`` was asked for
- speech started → ``SpeechStarted`` (only with ``vad_events=true``)
- every final out after ``CloseStream`` → ``Metadata`` (the handler then closes)
- an utterance failed, the stream failed, a refused message, Redis away → ``Error``
- recording, file and resume statuses have no counterpart

An utterance is one Deepgram "window": its interim results grow until its final closes
it, and the next window starts after it, so ``start``/``duration`` never overlap.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway import events
from gateway.deepgram import words
from gateway.deepgram.errors import error_frame
from gateway.deepgram.options import ListenOptions
from shared.audio_format import parse_raw_format
from shared.errors import ErrorCode

#: Our channel of Deepgram's ``[index, count]``: one channel (multichannel is mixed down).
CHANNEL = [0, 1]
MODEL_UUID_NAMESPACE = uuid.UUID("5f0c7a2e-3d1b-4c55-9a1e-2b7b8d0a6c41")


def model_info(model: str) -> tuple[str, dict[str, str]]:
    """A stable uuid per model name (Deepgram's metadata names models by uuid)."""
    model_uuid = str(uuid.uuid5(MODEL_UUID_NAMESPACE, model))
    return model_uuid, {"name": model, "version": "whisper-appliance", "arch": "whisper"}


@dataclass
class DeepgramRenderer:
    options: ListenOptions
    model: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    finalize_pending: int = 0  # Finalize messages whose final has not come yet
    audio_bytes: int = 0  # fed so far, for Metadata's sha256 and duration
    _sha256: Any = field(default_factory=hashlib.sha256)
    _last_end: float = 0.0
    _started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))

    def fed(self, data: bytes) -> None:
        self.audio_bytes += len(data)
        self._sha256.update(data)

    def render(self, event: events.Event) -> list[dict[str, Any]]:
        match event:
            case events.SpeechStarted() if self.options.vad_events:
                return [
                    {
                        "type": "SpeechStarted",
                        "channel": CHANNEL,
                        "timestamp": round(event.audio_ms / 1000, 3),
                    }
                ]
            case events.PartialText() if self.options.interim_results:
                return [self._results(event.message, is_final=False)] if event.text else []
            case events.FinalText():
                return self._final(event)
            case events.UtteranceFailed():
                return [error_frame(event.code, event.message, utterance_id=event.utterance_id)]
            case events.RecordingFailed() | events.RequestError():
                return [error_frame(event.code, event.message)]
            case events.RedisState(connected=False):
                return [
                    error_frame(ErrorCode.REDIS_UNAVAILABLE, "Redis is reconnecting; results may be late")
                ]
            case events.RecordingStopped():
                return [self.metadata()]
        return []

    def _final(self, event: events.FinalText) -> list[dict[str, Any]]:
        from_finalize = self.finalize_pending > 0
        self.finalize_pending = max(0, self.finalize_pending - 1)
        results = self._results(event.message, is_final=True, from_finalize=from_finalize)
        out = [results]
        if self.options.utterance_end_ms is not None and event.text:
            last = results["channel"]["alternatives"][0]["words"]
            last_word_end = last[-1]["end"] if last else results["start"] + results["duration"]
            out.append({"type": "UtteranceEnd", "channel": CHANNEL, "last_word_end": last_word_end})
        return out

    def _results(
        self, message: dict[str, Any], *, is_final: bool, from_finalize: bool = False
    ) -> dict[str, Any]:
        text = str(message.get("transcript") or "").strip()
        start = max(float(message.get("start") or 0.0), self._last_end)
        end = max(float(message.get("end") or start), start)
        if is_final:
            self._last_end = end
        segments = list(message.get("segments") or [])
        conf = words.confidence(segments) if text else 0.0
        punctuated = self.options.punctuated
        model_uuid, info = model_info(self.model)
        results: dict[str, Any] = {
            "type": "Results",
            "channel_index": CHANNEL,
            "duration": round(end - start, 3),
            "start": round(start, 3),
            "is_final": is_final,
            "speech_final": is_final and not from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": words.transcript_text(text, punctuated),
                        "confidence": conf,
                        "words": words.spread_words(text, start, end, conf, punctuated),
                    }
                ]
            },
            "metadata": {"request_id": self.request_id, "model_info": info, "model_uuid": model_uuid},
        }
        if from_finalize:
            results["from_finalize"] = True
        return results

    def _audio_seconds(self) -> float:
        """The audio's length when its format says it (raw PCM); else up to the last final."""
        spec = parse_raw_format(self.options.format)
        return spec.seconds(self.audio_bytes) if spec is not None else 0.0

    def metadata(self) -> dict[str, Any]:
        """What Deepgram sends once the stream is done, before it closes."""
        model_uuid, info = model_info(self.model)
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": self._sha256.hexdigest(),
            "created": self._started_at,
            "duration": round(max(self._last_end, self._audio_seconds()), 3),
            "channels": self.options.channels,
            "models": [model_uuid],
            "model_info": {model_uuid: info},
        }
