"""The lag watchdog's decision for one live stream: pure, so its bounds are unit tests.

A stream's lag is how long its oldest queued, unanswered final has waited
(:meth:`gateway.utterances.UtteranceMachine.lag`). Past ``S2T_MAX_STREAM_LAG_S`` the stream
is degraded: logged and counted once per excursion (the partials are thinned and paused
by the audio service and workers under the same load). Past ``S2T_STREAM_LAG_END_S`` it
cannot keep up and ends with ``stream_lagging``, rather than queue without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LagVerdict(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # it just passed the first bound
    END = "end"


@dataclass
class LagWatch:
    max_lag_s: float  # 0: no watchdog
    end_lag_s: float
    behind: bool = False

    def check(self, lag_s: float) -> LagVerdict:
        if self.max_lag_s <= 0:
            return LagVerdict.OK
        if lag_s > max(self.end_lag_s, self.max_lag_s):
            return LagVerdict.END
        was, self.behind = self.behind, lag_s > self.max_lag_s
        return LagVerdict.DEGRADED if self.behind and not was else LagVerdict.OK
