"""Transcript pieces -> OpenAI's response formats (``json``, ``text``, ``srt``, ``vtt``,
``verbose_json``).

Shared by the gateway's ``/v1/audio/*`` endpoints and the ``transcribe`` command, which
renders the same formats locally from the streamed pieces: one implementation, so a
subtitle file is the same whichever way it was made.

A *piece* is a final ``transcript`` message as the workers send it: ``transcript``,
``start``, ``end``, ``language`` and ``segments`` whose times are already absolute in the
file (``whisper_service.jobs`` adds the piece's offset).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")

MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def joined_text(pieces: Iterable[dict[str, Any]]) -> str:
    return " ".join(t for p in pieces if (t := str(p.get("transcript") or "").strip()))


def segments(pieces: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every segment of every piece, in file order, numbered the way OpenAI numbers them.

    A piece without segments but with text (an older worker) becomes one segment of its
    own, so no text is lost from the subtitles."""
    out: list[dict[str, Any]] = []
    for piece in pieces:
        raw = piece.get("segments")
        if raw is None and piece.get("transcript"):
            raw = [{"start": piece["start"], "end": piece["end"], "text": piece["transcript"]}]
        for seg in raw or []:
            if not str(seg.get("text", "")).strip():
                continue
            out.append(
                {
                    "id": len(out),
                    "seek": round(float(seg["start"]) * 100),  # Whisper's 10 ms frames
                    "start": float(seg["start"]),
                    "end": float(seg["end"]),
                    "text": " " + str(seg["text"]).strip(),  # Whisper's convention: a leading space
                    "tokens": [],
                    "temperature": float(seg.get("temperature") or 0.0),
                    "avg_logprob": float(seg.get("avg_logprob") or 0.0),
                    "compression_ratio": float(seg.get("compression_ratio") or 0.0),
                    "no_speech_prob": float(seg.get("no_speech_prob") or 0.0),
                    **({"words": seg["words"]} if "words" in seg else {}),
                    **({"speaker": str(seg["speaker"])} if seg.get("speaker") else {}),
                }
            )
    return out


def verbose_json(
    pieces: list[dict[str, Any]], *, duration_s: float, task: str, words: bool = False
) -> dict[str, Any]:
    """OpenAI's ``verbose_json`` body; ``words`` adds the flat word list (word granularity).

    ``language`` is the ISO code the model detected (OpenAI writes the English name)."""
    segs = segments(pieces)
    language = next((str(p["language"]) for p in pieces if p.get("language")), "")
    body: dict[str, Any] = {
        "task": task,
        "language": language,
        "duration": round(duration_s, 3),
        "text": joined_text(pieces),
        "segments": [{k: v for k, v in s.items() if k != "words"} for s in segs],
        "usage": usage(duration_s),
    }
    if words:
        body["words"] = [w for s in segs for w in s.get("words", [])]
    return body


def usage(duration_s: float) -> dict[str, Any]:
    """What OpenAI bills Whisper by: whole seconds of input audio."""
    return {"type": "duration", "seconds": math.ceil(duration_s)}


def timestamp(seconds: float, decimal: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cue_text(seg: dict[str, Any], voice_tag: bool) -> str:
    """The cue's text; a diarized segment names its speaker: WebVTT's voice span
    (``<v A>``), or ``A: `` in SRT, which has no speaker markup of its own."""
    text = seg["text"].strip()
    speaker = seg.get("speaker")
    if not speaker:
        return text
    if voice_tag:
        safe = speaker.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f"<v {safe}>{text}"
    return f"{speaker}: {text}"


def srt(pieces: list[dict[str, Any]]) -> str:
    cues = [
        f"{i}\n{timestamp(s['start'], ',')} --> {timestamp(s['end'], ',')}\n{_cue_text(s, False)}\n"
        for i, s in enumerate(segments(pieces), start=1)
    ]
    return "\n".join(cues)


def vtt(pieces: list[dict[str, Any]]) -> str:
    cues = [
        f"{timestamp(s['start'], '.')} --> {timestamp(s['end'], '.')}\n{_cue_text(s, True)}\n"
        for s in segments(pieces)
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def render(
    fmt: str, pieces: list[dict[str, Any]], *, duration_s: float, task: str, words: bool = False
) -> str | dict[str, Any]:
    """The body for ``response_format`` ``fmt``: a dict for the JSON formats, text otherwise."""
    if fmt == "json":
        return {"text": joined_text(pieces), "usage": usage(duration_s)}
    if fmt == "verbose_json":
        return verbose_json(pieces, duration_s=duration_s, task=task, words=words)
    if fmt == "srt":
        return srt(pieces)
    if fmt == "vtt":
        return vtt(pieces)
    if fmt == "text":
        return joined_text(pieces) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
