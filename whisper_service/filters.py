"""Drop what Whisper invents: text from noise, and text stuck in a loop.

The speech detector keeps silence away from the model, but noise that sounds a little
like speech still gets through; Whisper then writes "Thank you for watching" or repeats
one phrase until the window ends. Users of the peers complain about this more than
anything, so such segments are removed before anyone sees them.
"""

from __future__ import annotations

import re
import zlib

from whisper_service.backends import Segment

NO_SPEECH_PROB = 0.6  # Whisper's own estimate that the window held no speech
LOW_CONFIDENCE_LOGPROB = -1.0
COMPRESSION_RATIO = 2.4  # Whisper's criterion for degenerate, repetitive output
MAX_REPEATS = 3  # the same phrase this many times in a row is a loop


def is_hallucination(segment: Segment) -> bool:
    text = segment.text.strip()
    if not text:
        return True
    if segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOW_CONFIDENCE_LOGPROB / 2:
        return True
    return compression_ratio(text) > COMPRESSION_RATIO or repeats_in_a_loop(text)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def repeats_in_a_loop(text: str) -> bool:
    """True when a phrase of 2-8 words occurs MAX_REPEATS times back to back, or a single
    word twice as often (people do say "no, no, no")."""
    words = re.findall(r"\w+", text.lower())
    for n in range(1, 9):
        needed = MAX_REPEATS if n > 1 else 2 * MAX_REPEATS
        for i in range(len(words) - n * needed + 1):
            phrase = words[i : i + n]
            count, j = 1, i + n
            while words[j : j + n] == phrase:
                count, j = count + 1, j + n
            if count >= needed:
                return True
    return False


def clean(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if not is_hallucination(s)]
