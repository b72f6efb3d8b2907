"""Speaker labels of a live stream: each final utterance gets the label of the session's
voice it sounds like, or a new one, and a label once given never changes.

Online rather than clustered: a final is shown as soon as it is ready, so its label must
be decided then. An utterance's embedding is the mean of its speech windows' embeddings
(3 s utterances of the fixtures' voices: same voice >= 0.67, different voices <= 0.64 to
0.69); each voice keeps the running mean of its utterances, which is steadier
than any single one. Pure numpy; one instance per live session, so a session's voices are
compared only with each other.
"""

from __future__ import annotations

import numpy as np

from shared.speakers.clustering import DEFAULT_MATCH_THRESHOLD, letter

#: An utterance with fewer speech windows than this (under about 2 s of speech) is too
#: short to open a new voice; it gets the nearest one (a 0.9 s jfk utterance scored under
#: the threshold against jfk's voice in the live test).
MIN_WINDOWS_NEW = 2


class SessionSpeakers:
    """The voices heard so far in one live session (known speakers first, by name)."""

    def __init__(
        self, known: dict[str, np.ndarray] | None = None, threshold: float = DEFAULT_MATCH_THRESHOLD
    ) -> None:
        self.threshold = threshold
        self._labels: list[str] = []
        self._sums: list[np.ndarray] = []
        self._letters = 0  # voices heard that no known speaker matched
        self.know(known or {})

    def know(self, known: dict[str, np.ndarray]) -> None:
        """Known speakers' reference embeddings, by name. A live stream's come back with its
        first final's reply, so they are normally in before any voice is labelled; one
        that comes later still names the voices heard from then on."""
        for name, vec in known.items():
            if name not in self._labels:
                self._add(name, np.asarray(vec, dtype=np.float64))

    def _add(self, label: str, vec: np.ndarray) -> None:
        self._labels.append(label)
        self._sums.append(vec / max(float(np.linalg.norm(vec)), 1e-8))

    def assign(self, window_embeddings: np.ndarray) -> str | None:
        """The label of the utterance whose speech windows have these embeddings (None when
        it has none: too quiet or short to say)."""
        if len(window_embeddings) == 0:
            return None
        vec = np.asarray(window_embeddings, dtype=np.float64).mean(axis=0)
        vec = vec / max(float(np.linalg.norm(vec)), 1e-8)
        if self._sums:
            cents = np.stack([s / max(float(np.linalg.norm(s)), 1e-8) for s in self._sums])
            sims = cents @ vec
            best = int(np.argmax(sims))
            if sims[best] >= self.threshold:
                self._sums[best] = self._sums[best] + vec
                return self._labels[best]
            if len(window_embeddings) < MIN_WINDOWS_NEW:
                return self._labels[best]  # too short to tell a new voice: the nearest one
        label = letter(self._letters)
        self._letters += 1
        self._add(label, vec)
        return label
