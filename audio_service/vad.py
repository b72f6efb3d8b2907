"""Streaming speech detection with Silero VAD (the ONNX model faster-whisper carries).

The offline ``get_speech_timestamps`` needs the whole recording; a live stream arrives
250 ms at a time. :class:`StreamingVad` gives the same per-window probabilities
incrementally: it keeps the model's recurrent state and the last window's tail (the
model's left context) between calls, so a stream fed in chunks scores exactly as if it
had been scored in one pass.
"""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import get_vad_model

WINDOW = 512  # samples per decision at 16 kHz: 32 ms
CONTEXT = 64


class StreamingVad:
    def __init__(self) -> None:
        self._session = get_vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of every complete 32 ms window now available (float audio)."""
        samples = np.concatenate([self._pending, audio]) if self._pending.size else audio
        count = len(samples) // WINDOW
        self._pending = samples[count * WINDOW :].copy()
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        windows = samples[: count * WINDOW].reshape(count, WINDOW)
        contexts = np.vstack([self._context[None, :], windows[:-1, -CONTEXT:]])
        batch = np.concatenate([contexts, windows], axis=1).astype(np.float32, copy=False)
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)
