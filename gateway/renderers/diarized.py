"""OpenAI's ``diarized_json`` (model ``gpt-4o-transcribe-diarize``) and its request fields.

Pure: the transcript segments and the speaker turns come in, OpenAI's
``TranscriptionDiarized`` shape goes out; the speaker fields of the multipart form are
checked here so every bad value gets one clear OpenAI-shaped error. The clips' length and
whether they are audio at all is the audio service's check (``invalid_speaker_reference``,
limits in :mod:`shared.speakers.references`), since it decodes them like any audio; the
names and clips themselves are checked by :mod:`gateway.known_speakers` for every protocol.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.known_speakers import KnownSpeakerError, parse_known_speakers
from gateway.openai_errors import OpenAIError

DIARIZE_MODEL = "gpt-4o-transcribe-diarize"
#: OpenAI's ``chunking_strategy``: ``auto`` or a ``server_vad`` object. Accepted for
#: compatibility; this service always cuts files at silences itself.
CHUNKING_TYPES = ("auto", "server_vad")


@dataclass(frozen=True)
class SpeakerRequest:
    """The speaker fields of one request, checked."""

    known_names: list[str]
    references: list[bytes]
    min_speakers: int | None
    max_speakers: int | None


def _hint(value: str | None, param: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise OpenAIError(
            400, f"'{param}' must be an integer from 1 to 32", param=param, code="invalid_value"
        ) from None
    if not 1 <= n <= 32:
        raise OpenAIError(
            400, f"'{param}' must be an integer from 1 to 32", param=param, code="invalid_value"
        )
    return n


def parse_speaker_fields(
    names: Sequence[str], references: Sequence[str], min_speakers: str | None, max_speakers: str | None
) -> SpeakerRequest:
    """``known_speaker_names[]`` / ``known_speaker_references[]`` (data URLs of audio) and the
    ``min_speakers``/``max_speakers`` hints; decoding the clips is the caller's (ffmpeg) step."""
    try:
        known = parse_known_speakers(names, references)
    except KnownSpeakerError as exc:
        raise OpenAIError(400, exc.message, param=exc.param, code="invalid_value") from None
    lo, hi = _hint(min_speakers, "min_speakers"), _hint(max_speakers, "max_speakers")
    if lo is not None and hi is not None and lo > hi:
        raise OpenAIError(
            400, "'min_speakers' is greater than 'max_speakers'", param="min_speakers", code="invalid_value"
        )
    return SpeakerRequest([name for name, _ in known], [clip for _, clip in known], lo, hi)


def check_chunking_strategy(value: str | None, vad_type: str | None) -> None:
    """``chunking_strategy`` as the SDK sends it: ``auto``, a JSON object, or the object's
    fields flattened (``chunking_strategy[type]=server_vad``)."""
    kind = vad_type
    if value and kind is None:
        kind = value
        if value.startswith("{"):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            kind = parsed.get("type") if isinstance(parsed, dict) else None
    if kind is not None and kind not in CHUNKING_TYPES:
        raise OpenAIError(
            400,
            "'chunking_strategy' must be 'auto' or an object with type 'server_vad'",
            param="chunking_strategy",
            code="invalid_value",
        )


def render_diarized_json(
    segments: Sequence[tuple[float, float, str, str]], *, duration_s: float
) -> dict[str, object]:
    """OpenAI's TranscriptionDiarized from labelled segments (start, end, text, speaker),
    each with its own id (``seg_0``, ``seg_1``, ...)."""
    out = [
        {
            "type": "transcript.text.segment",
            "id": f"seg_{i}",
            "start": round(start, 3),
            "end": round(end, 3),
            "text": text.strip(),
            "speaker": speaker,
        }
        for i, (start, end, text, speaker) in enumerate(segments)
    ]
    return {
        "task": "transcribe",
        "duration": round(duration_s, 3),
        "text": " ".join(str(s["text"]) for s in out if s["text"]),
        "segments": out,
        "usage": {"type": "duration", "seconds": round(duration_s, 3)},
    }
