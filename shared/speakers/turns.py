"""Embedded windows -> speaker turns, once per file where all its pieces meet.

A worker embeds the speech windows of its piece (``whisper_service.speakers.pipeline``)
and the windows travel back in the piece's reply (:mod:`shared.speakers.wire`); the
file's assembler merges every piece's windows and clusters them together here, so a file
split across workers keeps one labelling, and one client's embeddings are only ever
compared with each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.speakers.clustering import cluster, label_clusters

Turn = tuple[float, float, str]


@dataclass
class Windows:
    """Embedded windows of one piece (or a whole file): start/end in file seconds."""

    starts: np.ndarray
    ends: np.ndarray
    embeddings: np.ndarray


def merge(pieces: Sequence[Windows]) -> Windows:
    """All pieces' windows in file order (the assembler's step before clustering)."""
    pieces = [p for p in pieces if len(p.starts)]
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
) -> list[Turn]:
    """(start, end, label) turns: each instant goes to the window whose centre is nearest."""
    if len(windows.starts) == 0:
        return []
    ids = cluster(windows.embeddings, min_speakers=min_speakers, max_speakers=max_speakers)
    labels = label_clusters(ids, windows.embeddings, known)
    centres = (windows.starts + windows.ends) / 2
    turns: list[Turn] = []
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


def speaker_for(start: float, end: float, turns: Sequence[Turn]) -> str:
    """The label that overlaps [start, end] most (the nearest turn if none overlaps)."""
    if not turns:
        return "A"
    best, who = 0.0, ""
    for s, e, w in turns:
        ov = min(end, e) - max(start, s)
        if ov > best:
            best, who = ov, w
    if who:
        return who
    mid = (start + end) / 2
    return min(turns, key=lambda t: min(abs(t[0] - mid), abs(t[1] - mid)))[2]
