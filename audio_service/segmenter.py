"""Cut a live stream into utterances at pauses, with partial snapshots while one goes on.

Works in the stream's own time (samples received), not wall-clock time, so it behaves
the same whether audio arrives in real time or faster. Only audio the speech detector
marked as speech ever becomes an utterance: silence and noise never reach the model.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np

from audio_service.vad import WINDOW, StreamingVad
from shared.audio_format import SAMPLE_RATE


@dataclass(frozen=True)
class SegmenterOptions:
    threshold: float = 0.5  # speech starts when a window's probability reaches this
    neg_threshold: float = 0.35  # ...and counts as pause below this
    pause_s: float = 0.5  # a pause this long ends the utterance (inf: only flush ends one)
    max_utterance_s: float = 20.0  # longer speech is cut here (and goes on in a new utterance)
    min_speech_s: float = 0.25  # less speech than this in an utterance is noise, dropped
    #: ...unless a client's commit ends it: the client has said this audio is a turn (a
    #: short word, "yes"); the VAD gate still keeps a lone blip and silence out.
    min_commit_speech_s: float = 0.064
    preroll_s: float = 0.3  # audio kept before speech onset (soft onsets, plosives)
    tail_s: float = 0.2  # audio kept after the last speech window
    partial_every_s: float = 1.0  # a partial snapshot after each second of new speech audio
    #: The utterance's first partial comes this much speech after its onset, sooner than the
    #: cadence (first words on screen are what a speaker notices most); 0: at the cadence.
    first_partial_s: float = 0.5


@dataclass(frozen=True)
class Utterance:
    """What the segmenter hands out for one utterance.

    ``partial``: the audio so far, while speech goes on. ``candidate``: speech has just
    paused; this is the final audio if the pause lasts, sent ahead so the model works
    while the pause is being confirmed. ``final``: the utterance is over; with
    ``confirms_candidate`` its audio is exactly the candidate's, whose result stands.
    """

    index: int  # utterance number in the stream
    audio: np.ndarray  # int16 samples
    start_s: float
    end_s: float
    kind: Literal["partial", "candidate", "final"]
    confirms_candidate: bool = False

    @property
    def final(self) -> bool:
        return self.kind == "final"


@dataclass(frozen=True)
class SpeechEvent:
    """Speech began or ended in the stream (OpenAI Realtime's ``speech_started`` /
    ``speech_stopped``). ``sample`` is in the stream's 16 kHz timeline: for a start it
    includes the pre-roll, for a stop the kept tail. ``kept`` is False when a stop ends
    an utterance too short to transcribe (or a cleared one): no final follows it."""

    kind: Literal["speech_started", "speech_stopped"]
    index: int  # the utterance number this speech has (or would have had)
    sample: int
    kept: bool = True


Event = Utterance | SpeechEvent


class Segmenter:
    def __init__(self, options: SegmenterOptions | None = None) -> None:
        self.options = options or SegmenterOptions()
        self._vad = StreamingVad()
        self._history = np.zeros(0, dtype=np.int16)  # samples not yet scored, plus pre-roll
        self._history_start = 0  # stream sample index of _history[0]
        self._scored = 0  # stream samples scored by the VAD so far
        self._utterance: list[np.ndarray] = []
        self._utt_start = 0
        self._utt_len = 0
        self._speech_windows = 0
        self._silence_run = 0
        self._last_speech_end = 0
        self._last_partial_len = 0
        self._onset = 0  # stream sample where the open utterance's speech began (pre-roll excluded)
        self._candidate_for = -1  # the speech end the last candidate covered
        self._count = 0

    def feed(self, pcm: np.ndarray) -> list[Utterance]:
        """Take int16 samples; return partials and finals that are now due, in order."""
        return [e for e in self.feed_events(pcm) if isinstance(e, Utterance)]

    def flush(self) -> list[Utterance]:
        """End of stream: the open utterance becomes final."""
        return [e for e in self.flush_events() if isinstance(e, Utterance)]

    def feed_events(self, pcm: np.ndarray) -> list[Event]:
        """As :meth:`feed`, with the speech starts and stops interleaved in stream order."""
        o = self.options
        out: list[Event] = []
        self._history = np.concatenate([self._history, pcm])
        probs = self._vad(pcm.astype(np.float32) / 32768.0)
        ends_on_pause = math.isfinite(o.pause_s)
        pause = int(o.pause_s * SAMPLE_RATE) if ends_on_pause else sys.maxsize
        for prob in probs:
            w_start = self._scored
            self._scored += WINDOW
            window = self._history[w_start - self._history_start : self._scored - self._history_start]
            if not self._utterance:
                if prob >= o.threshold:
                    out.append(self._begin(w_start))
                continue
            self._append(window)
            if prob >= o.threshold:
                self._speech_windows += 1
                self._silence_run = 0
                self._last_speech_end = self._scored
            elif prob < o.neg_threshold:
                self._silence_run += WINDOW
            tail = int(o.tail_s * SAMPLE_RATE)
            if self._silence_run >= pause:
                out.extend(self._end(self._last_speech_end + tail))
            elif ends_on_pause and self._silence_run >= tail and self._candidate_for != self._last_speech_end:
                self._candidate_for = self._last_speech_end
                if self._speech_windows * WINDOW >= o.min_speech_s * SAMPLE_RATE:
                    out.append(self._snapshot("candidate", end=self._last_speech_end + tail))
            elif self._utt_len >= o.max_utterance_s * SAMPLE_RATE:
                out.extend(self._end(self._utt_start + self._utt_len, continues=True))
            elif self._partial_due() and self._candidate_for != self._last_speech_end:
                # (the second test: nothing new since the candidate, whose answer shows instead)
                self._last_partial_len = self._utt_len
                out.append(self._snapshot("partial"))
        self._trim_history()
        return out

    def flush_events(self) -> list[Event]:
        """End of stream: the open utterance becomes final."""
        return self._end(self._utt_start + self._utt_len) if self._utterance else []

    def commit_events(self) -> list[Event]:
        """A client's commit: the open utterance becomes final when the VAD found at least
        ``min_commit_speech_s`` of speech in it (less: no final, the commit has no words)."""
        if not self._utterance:
            return []
        return self._end(self._utt_start + self._utt_len, min_speech_s=self.options.min_commit_speech_s)

    def clear(self) -> SpeechEvent | None:
        """Drop the open utterance unsent (a client's ``input_audio_buffer.clear``); the
        speech detector keeps its state, so speech going on starts a new utterance."""
        if not self._utterance:
            return None
        event = SpeechEvent("speech_stopped", self._count, self._scored, kept=False)
        self._utterance = []
        self._utt_len = 0
        self._candidate_for = -1
        return event

    # --- internals -------------------------------------------------------------------

    def _partial_due(self) -> bool:
        """The first partial once ``first_partial_s`` of speech is in; later ones after each
        ``partial_every_s`` of new audio."""
        o = self.options
        if self._last_partial_len == 0 and o.first_partial_s > 0:
            return self._scored - self._onset >= o.first_partial_s * SAMPLE_RATE
        return self._utt_len - self._last_partial_len >= o.partial_every_s * SAMPLE_RATE

    def _begin(self, speech_start: int) -> SpeechEvent:
        start = max(self._history_start, speech_start - int(self.options.preroll_s * SAMPLE_RATE))
        self._utterance = [
            self._history[start - self._history_start : self._scored - self._history_start].copy()
        ]
        self._utt_start = start
        self._utt_len = self._scored - start
        self._speech_windows = 1
        self._silence_run = 0
        self._last_speech_end = self._scored
        self._last_partial_len = 0
        self._onset = speech_start
        return SpeechEvent("speech_started", self._count, start)

    def _append(self, window: np.ndarray) -> None:
        self._utterance.append(window.copy())
        self._utt_len += len(window)

    def _snapshot(
        self, kind: Literal["partial", "candidate", "final"], end: int | None = None, confirms: bool = False
    ) -> Utterance:
        audio = np.concatenate(self._utterance)
        if end is not None:
            audio = audio[: max(0, end - self._utt_start)]
        return Utterance(
            index=self._count,
            audio=audio,
            start_s=self._utt_start / SAMPLE_RATE,
            end_s=(self._utt_start + len(audio)) / SAMPLE_RATE,
            kind=kind,
            confirms_candidate=confirms,
        )

    def _end(self, end: int, continues: bool = False, min_speech_s: float | None = None) -> list[Event]:
        least = self.options.min_speech_s if min_speech_s is None else min_speech_s
        enough = self._speech_windows * WINDOW >= least * SAMPLE_RATE
        confirms = self._candidate_for == self._last_speech_end and not continues
        stopped = SpeechEvent("speech_stopped", self._count, end, kept=enough)
        result: list[Event] = [stopped]
        if enough:
            result.append(self._snapshot("final", end=end, confirms=confirms))
            self._count += 1
        self._utterance = []
        self._utt_len = 0
        if continues:  # speech goes on past the length limit: start the next one right here
            self._utterance = [np.zeros(0, dtype=np.int16)]
            self._utt_start = end
            self._speech_windows = 0
            self._silence_run = 0
            self._last_speech_end = end
            self._last_partial_len = 0
            self._onset = end
            result.append(SpeechEvent("speech_started", self._count, end))
        self._candidate_for = -1
        return result

    def _trim_history(self) -> None:
        """Keep only the pre-roll: memory stays flat however long the stream runs."""
        keep_from = self._scored - int(self.options.preroll_s * SAMPLE_RATE) - WINDOW
        drop = keep_from - self._history_start
        if drop > 0:
            self._history = self._history[drop:]
            self._history_start += drop
