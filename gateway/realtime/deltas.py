"""Turn our partial transcripts into OpenAI-style text deltas that never need taking back.

A partial replaces the previous one (Whisper may revise earlier words as more audio
arrives), while OpenAI's ``...input_audio_transcription.delta`` events are appended by
clients: a word once sent cannot be changed. So a partial's word is sent only when it is
unlikely to change:

- a word the previous partial of the item already read the same way (compared without
  case and punctuation), up to the first disagreement: two readings of more audio agree;
- or a word whose audio ended at least :data:`SETTLED_S` before the partial's end (its
  place is estimated from the share of characters before it): Whisper revises the last
  second or so of a snapshot, rarely what lies well before it;
- never the partial's last word (the snapshot may cut it mid-word).

A candidate final (the utterance's audio up to a pause, usually the final itself) is
sent whole. Every delta must continue the words already sent; a revision that
contradicts them sends nothing more for that item while it stands, and ``completed``
always carries the settled text.

Measured with ``bench.realtime_deltas`` (every snapshot of the English fixtures,
tiny.en; README, "Realtime"): items whose ``completed`` differs from their concatenated
deltas went from 3/15 to 0/15; deltas per item 2.67 -> 2.13; median lead before the
final 0.90 -> 0.55 s; words sent by partials (before the pause) 61% -> 37%.

Alternatives that were tried, on the same snapshots:

- Holding back the last 2 words instead of 1: 1/15 contradicted ("And so my fellow men"
  sent "And so my"; the final read "And so am I"), since the first partial of an item
  is often wrong all through.
- Agreement alone, on every word (whisper_streaming's "local agreement"): 0/15, but
  partials come about once a second, so a word waits a whole partial longer: only 29% of
  the words went before the pause and the median lead fell to 0.30 s (on a busy machine,
  with fewer partials, the words arrived with the final).
- A shorter settling time (0.8 s): 1/15 contradicted again, the same "my".
"""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^\w']+")
#: A partial's word whose audio ended this long before the partial's end is taken as
#: settled without a second reading.
SETTLED_S = 1.0


def _norm(word: str) -> str:
    return _NON_WORD.sub("", word.lower())


class DeltaTracker:
    def __init__(self) -> None:
        self._sent: dict[str, list[str]] = {}
        self._previous: dict[str, list[str]] = {}  # the item's last partial, as words

    def partial(self, item_id: str, text: str, *, whole: bool = False, seconds: float = 0.0) -> str | None:
        """The delta a new partial allows (None: nothing new, or it contradicts sent text).
        ``whole``: the text covers the utterance up to a pause (a candidate final), so no
        word is cut off and all of it may go. ``seconds``: the span its words cover (the
        bench passes the snapshot's length; the service, the segments' span, which is no
        longer, so it is at least as cautious)."""
        words = text.split()
        if whole:
            return self._advance(item_id, words)
        previous = self._previous.get(item_id, [])
        self._previous[item_id] = words
        return self._advance(item_id, words[: max(_agreed(words, previous), _settled(words, seconds))])

    def final(self, item_id: str, text: str) -> str | None:
        """The last delta before ``completed``: whatever of the final was not yet sent."""
        delta = self._advance(item_id, text.split())
        self.forget(item_id)
        return delta

    def forget(self, item_id: str) -> None:
        self._sent.pop(item_id, None)
        self._previous.pop(item_id, None)

    def _advance(self, item_id: str, words: list[str]) -> str | None:
        sent = self._sent.get(item_id, [])
        if len(words) <= len(sent) or [_norm(w) for w in words[: len(sent)]] != [_norm(w) for w in sent]:
            return None
        new = words[len(sent) :]
        self._sent[item_id] = sent + new
        return (" " if sent else "") + " ".join(new)


def _agreed(words: list[str], previous: list[str]) -> int:
    """How many leading words (never the last) the previous partial read the same way."""
    n = 0
    while n < min(len(words) - 1, len(previous)) and _norm(words[n]) == _norm(previous[n]):
        n += 1
    return n


def _settled(words: list[str], seconds: float) -> int:
    """How many leading words (never the last) ended :data:`SETTLED_S` before the end of
    ``seconds`` of audio, placing each word by the share of characters up to its end."""
    total = sum(len(w) + 1 for w in words)
    done, count = 0, 0
    for n, word in enumerate(words[:-1]):
        done += len(word) + 1
        if (1 - done / total) * seconds >= SETTLED_S:
            count = n + 1
    return count
