"""A piece's audio -> its embedded speech windows: energy VAD, 2 s windows every 1 s.

The worker's half of speaker labelling: `window_embeddings` runs on each piece beside its
transcription and returns plain arrays that travel back in the piece's msgpack reply;
clustering and labelling (:mod:`shared.speakers.turns`) run once where all pieces meet
(the gateway's file assembly), so one client's embeddings are only compared with each other.
"""

from __future__ import annotations

import numpy as np

from shared.speakers.turns import Windows
from whisper_service.speakers.embedding import SAMPLE_RATE, SpeakerEncoder

WINDOW_S = 2.0
STEP_S = 1.0
FRAME_S = 0.03


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
