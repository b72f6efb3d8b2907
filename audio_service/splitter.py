"""Split decoded audio into pieces of at most ``max_piece_s`` that end at silences.

Silero VAD (the model faster-whisper carries) finds speech; consecutive speech regions
are packed into pieces, and pieces are cut in the middle of the pauses between them.
Cutting at pauses, not every 30 s, keeps words whole, and independent pieces let
several workers transcribe one file in parallel. Audio with no speech yields no
pieces: nothing goes to the model that could only make it invent words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from shared.audio_format import SAMPLE_RATE

#: Audio kept either side of the speech in a piece (Whisper needs a little context).
EDGE_PAD_S = 0.3


@dataclass(frozen=True)
class Piece:
    index: int
    start: int  # sample offsets into the decoded audio
    end: int
    #: Where the piece has speech, in samples from its start; filled only when asked for.
    speech: tuple[tuple[int, int], ...] = ()

    def speech_spans_s(self) -> list[tuple[float, float]]:
        """:attr:`speech` in seconds from the piece's start, as a job carries it."""
        return [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in self.speech]

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE


#: Window the short-file speech check looks at before moving on (most speech starts early).
PROBE_WINDOW_S = 3.0
#: Speech usually starts within the first second: a short first window answers most
#: files in ~3 ms instead of ~6.5 ms for a full one (jfk, 2-core VM).
FIRST_PROBE_S = 1.0


def speech_regions(audio: np.ndarray, max_region_s: float = float("inf")) -> list[tuple[int, int]]:
    options = VadOptions(
        threshold=0.5,
        min_speech_duration_ms=150,
        max_speech_duration_s=max_region_s,
        min_silence_duration_ms=300,
        speech_pad_ms=100,
    )
    return [(r["start"], r["end"]) for r in get_speech_timestamps(audio, options)]


def has_speech(audio: np.ndarray) -> bool:
    """Whether there is any speech at all, stopping at the first window that has some.

    A file that fits in one piece needs only this yes/no, and speech usually starts in
    the first seconds, so the check costs a few milliseconds instead of a full pass.
    """
    overlap = SAMPLE_RATE // 2  # speech straddling a window edge is still seen whole
    first = int(FIRST_PROBE_S * SAMPLE_RATE)
    step = int(PROBE_WINDOW_S * SAMPLE_RATE)
    starts = [0, *range(first, len(audio), step)]
    ends = [first, *(start + step for start in starts[1:])]
    return any(speech_regions(audio[start : end + overlap]) for start, end in zip(starts, ends, strict=True))


def split(audio: np.ndarray, max_piece_s: float, *, with_speech: bool = False) -> list[Piece]:
    """``with_speech``: also say where each piece has speech (:attr:`Piece.speech`), for a
    worker to snap subtitle times to it without running the VAD again. A long file's
    regions are known anyway; a short one then gets the full pass its probe avoids."""
    total = len(audio)
    if total <= max_piece_s * SAMPLE_RATE:
        if not has_speech(audio):
            return []
        return [Piece(0, 0, total, tuple(speech_regions(audio)) if with_speech else ())]
    pad = int(EDGE_PAD_S * SAMPLE_RATE)
    budget = int(max_piece_s * SAMPLE_RATE) - 2 * pad
    regions = speech_regions(audio, max_region_s=budget / SAMPLE_RATE)
    if not regions:
        return []

    groups: list[list[tuple[int, int]]] = [[regions[0]]]
    for region in regions[1:]:
        if region[1] - groups[-1][0][0] <= budget:
            groups[-1].append(region)
        else:
            groups.append([region])

    pieces: list[Piece] = []
    for i, group in enumerate(groups):
        lo, hi = group[0][0], group[-1][1]
        prev_cut = 0 if i == 0 else (groups[i - 1][-1][1] + lo) // 2
        next_cut = total if i == len(groups) - 1 else (hi + groups[i + 1][0][0]) // 2
        start = max(prev_cut, lo - pad)
        speech = tuple((a - start, b - start) for a, b in group) if with_speech else ()
        pieces.append(Piece(i, start, min(next_cut, hi + pad), speech))
    return pieces
