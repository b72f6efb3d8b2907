"""Diarization error rate with a forgiveness collar (an equivalent of pyannote.metrics'
DiarizationErrorRate, written here to avoid its scipy/sklearn stack; unit tested).

DER = (missed speech + false alarm + speaker confusion) / reference speech, on a 10 ms
grid, with ``collar`` seconds on each side of every reference boundary not scored, and
the reference-to-hypothesis speaker mapping chosen to maximise overlap. Single speaker at
a time (overlap is not modelled: the fixtures' conversations do not overlap).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

Turn = tuple[float, float, str]
STEP = 0.01


def _grid(turns: Sequence[Turn], n: int, names: list[str]) -> np.ndarray:
    g = np.full(n, -1, dtype=int)
    for start, end, who in turns:
        g[round(start / STEP) : round(end / STEP)] = names.index(who)
    return g


def der(reference: Sequence[Turn], hypothesis: Sequence[Turn], collar: float = 0.25) -> float:
    """DER of ``hypothesis`` against ``reference``; turns are (start_s, end_s, speaker)."""
    end = max([t[1] for t in [*reference, *hypothesis]] + [0.0])
    n = round(end / STEP) + 1
    ref_names = sorted({t[2] for t in reference})
    hyp_names = sorted({t[2] for t in hypothesis})
    ref = _grid(reference, n, ref_names)
    hyp = _grid(hypothesis, n, hyp_names)
    scored = np.ones(n, dtype=bool)
    c = round(collar / STEP)
    for start, stop, _ in reference:
        for b in (round(start / STEP), round(stop / STEP)):
            scored[max(0, b - c) : b + c] = False
    ref, hyp = ref[scored], hyp[scored]
    total = int((ref >= 0).sum())
    if total == 0:
        return 0.0
    miss = int(((ref >= 0) & (hyp < 0)).sum())
    fa = int(((ref < 0) & (hyp >= 0)).sum())
    both = (ref >= 0) & (hyp >= 0)
    overlap = np.zeros((len(ref_names), max(len(hyp_names), 1)), dtype=int)
    np.add.at(overlap, (ref[both], hyp[both]), 1)
    best = 0
    k = min(len(ref_names), len(hyp_names))
    for rs in itertools.combinations(range(len(ref_names)), k):
        for hs in itertools.permutations(range(len(hyp_names)), k):
            best = max(best, int(sum(overlap[r, h] for r, h in zip(rs, hs, strict=True))))
    confusion = int(both.sum()) - best
    return (miss + fa + confusion) / total
