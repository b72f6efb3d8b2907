"""Deepgram's transcript and ``words`` from one of our transcripts.

Live utterances are decoded without word timings (faster-whisper's word alignment costs
a second pass and shifts where decoding resumes, see :mod:`gateway.openai_api`), so a
live result's words share its utterance's span in proportion to their length: honest
to the utterance, approximate within it. A file decoded with word timings
(the pre-recorded API asks for them) carries the model's own word times.
"""

from __future__ import annotations

import math
import re
from typing import Any

_PUNCTUATION = re.compile(r"[^\w\s'-]+")


def plain(word: str) -> str:
    """A word as Deepgram writes it without punctuation: lower case, no marks."""
    return _PUNCTUATION.sub("", word).lower().strip("-'")


def transcript_text(text: str, punctuated: bool) -> str:
    if punctuated:
        return text.strip()
    return " ".join(w for w in (plain(t) for t in text.split()) if w)


def confidence(segments: list[dict[str, Any]]) -> float:
    """The decoder's mean token probability (``exp(avg_logprob)``), 0..1."""
    logprobs = [float(s["avg_logprob"]) for s in segments if s.get("avg_logprob") is not None]
    if not logprobs:
        return 0.9
    return round(min(1.0, math.exp(sum(logprobs) / len(logprobs))), 4)


def spread_words(text: str, start: float, end: float, conf: float, punctuated: bool) -> list[dict[str, Any]]:
    """Words over ``[start, end]`` in proportion to their length."""
    tokens = text.split()
    total = sum(len(t) for t in tokens) or 1
    span = max(0.0, end - start)
    out, at = [], start
    for token in tokens:
        length = span * len(token) / total
        out.append(_word(token, at, at + length, conf, punctuated))
        at += length
    return [w for w in out if w["word"]]


def timed_words(segments: list[dict[str, Any]], punctuated: bool) -> list[dict[str, Any]] | None:
    """The model's word times, when every segment has them."""
    if not segments or any("words" not in s for s in segments):
        return None
    out = []
    for seg in segments:
        conf = confidence([seg])
        for w in seg["words"]:
            word = _word(str(w["word"]), float(w["start"]), float(w["end"]), conf, punctuated)
            if word["word"]:
                out.append(word)
    return out


def _word(token: str, start: float, end: float, conf: float, punctuated: bool) -> dict[str, Any]:
    word: dict[str, Any] = {
        "word": plain(token),
        "start": round(start, 3),
        "end": round(end, 3),
        "confidence": conf,
    }
    if punctuated:
        word["punctuated_word"] = token.strip()
    return word
