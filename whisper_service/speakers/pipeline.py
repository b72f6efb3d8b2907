"""Audio -> speaker turns: energy VAD, 2 s windows every 1 s, embed, cluster, label.

Split in two so long files split across workers keep one labelling: `window_embeddings`
runs on each piece (a worker) and returns plain arrays that travel back in the piece's
msgpack reply; `turns_from_windows` runs once where all pieces meet (the file assembler),
so one client's embeddings are only ever compared with each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from whisper_service.speakers.clustering import cluster, label_clusters
from whisper_service.speakers.embedding import SAMPLE_RATE, SpeakerEncoder

WINDOW_S = 2.0
STEP_S = 1.0
FRAME_S = 0.03


@dataclass
class Windows:
    """Embedded windows of one piece: centres in seconds (file time) and embeddings."""

    starts: np.ndarray
    ends: np.ndarray
    embeddings: np.ndarray


def speech_mask(audio: np.ndarray, frame_s: float = FRAME_S) -> np.ndarray:
    """Per 30 ms frame: louder than 10% of the loud frames' level (quiet = not speech)."""
    hop = int(frame_s * SAMPLE_RATE)
    n = len(audio) // hop
    if n == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    ref = float(np.percentile(rms, 95)) if n else 0.0
    mask = rms > max(ref * 0.1, 1e-4)
    # morphological closing: gaps under ~150 ms (stops between words) count as speech
    k = 5
    dilated = np.convolve(mask.astype(float), np.ones(k), mode="same") > 0
    return np.convolve(dilated.astype(float), np.ones(k), mode="same") >= k - 0.5


def window_embeddings(audio: np.ndarray, encoder: SpeakerEncoder, offset_s: float = 0.0) -> Windows:
    """Embeddings of the speech windows of ``audio`` (a piece starting at ``offset_s``)."""
    mask = speech_mask(audio)
    hop = int(FRAME_S * SAMPLE_RATE)
    win, step = int(WINDOW_S / FRAME_S), int(STEP_S / FRAME_S)
    starts: list[float] = []
    ends: list[float] = []
    chunks: list[np.ndarray] = []
    # speech runs
    i = 0
    while i < len(mask):
        if not mask[i]:
            i += 1
            continue
        j = i
        while j < len(mask) and mask[j]:
            j += 1
        s = i
        while True:
            e = min(s + win, j)
            if e - s >= 10 or s == i:  # >= 0.3 s, or the whole short run
                starts.append(offset_s + s * FRAME_S)
                ends.append(offset_s + e * FRAME_S)
                chunks.append(audio[s * hop : e * hop])
            if e >= j:
                break
            s += step
        i = j
    emb = encoder.embed_many(chunks) if chunks else np.zeros((0, encoder.dim), dtype=np.float32)
    return Windows(np.array(starts), np.array(ends), emb)


def merge(pieces: Sequence[Windows]) -> Windows:
    """All pieces' windows in file order (the assembler's step before clustering)."""
    if not pieces:
        return Windows(np.zeros(0), np.zeros(0), np.zeros((0, 256), dtype=np.float32))
    return Windows(
        np.concatenate([p.starts for p in pieces]),
        np.concatenate([p.ends for p in pieces]),
        np.concatenate([p.embeddings for p in pieces]),
    )


def turns_from_windows(
    windows: Windows,
    *,
    known: dict[str, np.ndarray] | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> list[tuple[float, float, str]]:
    """(start, end, label) turns: each instant goes to the window whose centre is nearest."""
    if len(windows.starts) == 0:
        return []
    ids = cluster(windows.embeddings, min_speakers=min_speakers, max_speakers=max_speakers)
    labels = label_clusters(ids, windows.embeddings, known)
    centres = (windows.starts + windows.ends) / 2
    turns: list[tuple[float, float, str]] = []
    for k in range(len(centres)):
        lo = (
            windows.starts[k]
            if k == 0 or windows.starts[k] >= windows.ends[k - 1]
            else (centres[k - 1] + centres[k]) / 2
        )
        nxt = k + 1
        hi = (
            windows.ends[k]
            if nxt == len(centres) or windows.starts[nxt] >= windows.ends[k]
            else (centres[k] + centres[nxt]) / 2
        )
        if turns and turns[-1][2] == labels[k] and abs(turns[-1][1] - lo) < 1e-6:
            turns[-1] = (turns[-1][0], float(hi), labels[k])
        else:
            turns.append((float(lo), float(hi), labels[k]))
    return turns


def speaker_for(start: float, end: float, turns: Sequence[tuple[float, float, str]]) -> str:
    """The label that overlaps [start, end] most (nearest turn if none overlaps)."""
    if not turns:
        return "A"
    best, who = -1.0, turns[0][2]
    for s, e, w in turns:
        ov = min(end, e) - max(start, s)
        if ov > best:
            best, who = ov, w
    if best <= 0:
        mid = (start + end) / 2
        who = min(turns, key=lambda t: min(abs(t[0] - mid), abs(t[1] - mid)))[2]
    return who
