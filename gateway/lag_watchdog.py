"""The lag watchdog's decision for one live stream: pure, so its bounds are unit tests.

A stream's lag is how long its oldest queued, unanswered final has waited
(:meth:`gateway.utterances.UtteranceMachine.lag`). Past ``S2T_MAX_STREAM_LAG_S`` the stream
is degraded: logged and counted once per excursion (the partials are thinned and paused
by the audio service and workers under the same load). Past ``S2T_STREAM_LAG_END_S`` it
cannot keep up and ends with ``stream_lagging``, rather than queue without bound; but only
a stream fed at about real time: a client that sends its audio faster (a recording
uploaded through the live path, or the gap after a resume) builds that backlog on purpose
and is only reported. Nor is a stream ended while the pool recovers from a Redis restart
(away, or back for less than ``S2T_STREAM_LAG_END_S``): its finals are being queued again
from the audio service's buffer (README, "Redis restarts"), so the lag is the outage's,
not the stream's, and it shrinks on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: Stream seconds per wall second above which a client is sending faster than real time.
REAL_TIME_PACE = 1.25


class LagVerdict(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # it just passed the first bound
    END = "end"


@dataclass
class LagWatch:
    max_lag_s: float  # 0: no watchdog
    end_lag_s: float
    behind: bool = False

    def check(self, lag_s: float, pace: float = 1.0, *, recovering: bool = False) -> LagVerdict:
        """``pace``: the stream's audio seconds so far per wall second since it started;
        ``recovering``: Redis is away or came back lately."""
        if self.max_lag_s <= 0:
            return LagVerdict.OK
        if lag_s > max(self.end_lag_s, self.max_lag_s) and pace <= REAL_TIME_PACE and not recovering:
            return LagVerdict.END
        was, self.behind = self.behind, lag_s > self.max_lag_s
        return LagVerdict.DEGRADED if self.behind and not was else LagVerdict.OK
