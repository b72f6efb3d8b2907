"""How often a live stream sends partials, from how loaded the worker pool is: partials
thin, then pause, before any final slows (issue 14 part 3).

Partials are replaced anyway, and each one costs a worker a full encoder pass; finals are
what a speaker keeps. So when the pool is busy a stream asks for fewer partials, and past
a bound none, until the pool is calm again. Pure: load figures in, decisions out; the
live stream (:mod:`audio_service.streams`) reads the figures and sends the notices.

The figures, read each time the segmenter offers a partial (about once per second of
speech, so it costs nothing while nobody speaks):

- this stream's newest answered partial's queue wait (the workers note it in the stream's
  ledger): the most direct measure of whether partials crowd the pool;
- the pool's waiting finals and partials (queue depths): a final that has to wait means
  no worker was free for it. While partials are paused the stream has no waits of its
  own to read, so only these decide when they resume.

Rules (``S2T_PARTIAL_*`` in :mod:`shared.config`):

- busy (a final waiting, or a partial that waited ``busy_wait_s`` or more): the interval
  doubles, up to ``max_interval_s``; a calm new wait halves it back towards the cadence;
- a partial that waited ``pause_wait_s`` or more, or busy at the widest interval: paused;
- paused, partials resume once no observation for ``resume_s`` found a final or a partial
  waiting; they start again at the widest interval and narrow as waits stay calm.

Rejected: one pool-wide switch in Redis that pauses every stream at once (all streams
would resume together too, and the burst pause them again); per stream, resumes spread out
over the streams' own speech.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Slack on the interval check: the segmenter offers partials on 32 ms VAD windows.
_SLACK_S = 0.05

Change = Literal["paused", "resumed"]


@dataclass(frozen=True)
class PacerOptions:
    interval_s: float = 1.0  # the normal cadence (S2T_PARTIAL_INTERVAL_S)
    max_interval_s: float = 4.0  # thinned at most to this, then paused
    busy_wait_s: float = 0.5  # a partial that waited this long (or a final waiting): thin
    pause_wait_s: float = 2.0  # a partial that waited this long: pause at once
    resume_s: float = 3.0  # paused this long with the pool calm: resume


@dataclass(frozen=True)
class Load:
    finals_waiting: int  # pool-wide, in the queue
    partials_waiting: int
    #: Queue wait of this stream's newest partial answered since the last look (None: none new).
    partial_wait_s: float | None = None


class PartialPacer:
    def __init__(self, options: PacerOptions | None = None) -> None:
        self.options = options or PacerOptions()
        self.interval_s = self.options.interval_s
        self.paused = False
        self._quiet_since = 0.0  # paused: when the last observation that found waiting work was

    def observe(self, load: Load, now: float) -> Change | None:
        """Take the figures read now; the change of state they cause, if any."""
        o = self.options
        if self.paused:
            if load.finals_waiting or load.partials_waiting:
                self._quiet_since = now
                return None
            if now - self._quiet_since < o.resume_s:
                return None
            self.paused = False
            self.interval_s = max(o.interval_s, o.max_interval_s)
            return "resumed"
        wait = load.partial_wait_s
        busy = load.finals_waiting > 0 or (wait is not None and wait >= o.busy_wait_s)
        if (wait is not None and wait >= o.pause_wait_s) or (busy and self.interval_s >= o.max_interval_s):
            self.paused = True
            self._quiet_since = now
            return "paused"
        if busy:
            self.interval_s = min(o.max_interval_s, self.interval_s * 2)
        elif wait is not None:
            self.interval_s = max(o.interval_s, self.interval_s / 2)
        return None

    def due(self, since_last_s: float | None) -> bool:
        """Whether a partial goes now. ``since_last_s``: utterance audio since the last partial
        sent for this utterance (None: none yet; the first comes whenever partials are on)."""
        if self.paused:
            return False
        return since_last_s is None or since_last_s + _SLACK_S >= self.interval_s
