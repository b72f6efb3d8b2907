"""Turn our partial transcripts into OpenAI-style text deltas.

A partial replaces the previous one (Whisper may revise earlier words as more audio
arrives), while OpenAI's ``...input_audio_transcription.delta`` events are appended by
clients. So a partial sends its words except the last one (the snapshot may cut it
mid-word), and only while the words already sent are still its prefix (compared without
case and punctuation). A candidate final (the utterance's audio up to a pause, usually
the final itself) is sent whole. A revision that contradicts sent text sends nothing more
for that item while it stands; ``completed`` always carries the settled text. When nothing was
contradicted, the deltas concatenate to the completed transcript (up to punctuation on a
word sent early).

Waiting for two partials to agree on a word first (whisper_streaming's "local
agreement") was tried: partials come about once a second, so on a busy machine the
agreed words arrived with the final, and the deltas were no longer live.
"""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^\w']+")


def _norm(word: str) -> str:
    return _NON_WORD.sub("", word.lower())


class DeltaTracker:
    def __init__(self) -> None:
        self._sent: dict[str, list[str]] = {}

    def partial(self, item_id: str, text: str, *, whole: bool = False) -> str | None:
        """The delta a new partial allows (None: nothing new, or it contradicts sent text).
        ``whole``: the text covers the utterance up to a pause (a candidate final), so no
        word is cut off and all of it may go."""
        words = text.split()
        return self._advance(item_id, words if whole else words[:-1])

    def final(self, item_id: str, text: str) -> str | None:
        """The last delta before ``completed``: whatever of the final was not yet sent."""
        delta = self._advance(item_id, text.split())
        self.forget(item_id)
        return delta

    def forget(self, item_id: str) -> None:
        self._sent.pop(item_id, None)

    def _advance(self, item_id: str, words: list[str]) -> str | None:
        sent = self._sent.get(item_id, [])
        if len(words) <= len(sent) or [_norm(w) for w in words[: len(sent)]] != [_norm(w) for w in sent]:
            return None
        new = words[len(sent) :]
        self._sent[item_id] = sent + new
        return (" " if sent else "") + " ".join(new)
