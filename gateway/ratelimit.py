"""Per-connection message rate limit over a sliding one-minute window.

Counts the messages a client chose to send (commands and whole-file binary frames), not
the audio chunks of a live recording: MediaRecorder's 250 ms chunks alone are 240 a
minute. Over the limit a message is refused with ``rate_limited``; a client that keeps
going after ``grace`` refusals in one window is flooding, and its connection is closed
with :data:`CLOSE_CODE` (1008, policy violation).
"""

from __future__ import annotations

import time
from collections import deque
from enum import Enum

from shared.errors import ErrorCode, close_code

#: What a flooding connection is closed with (on :attr:`Verdict.CLOSE`), from the error table.
CLOSE_CODE = close_code(ErrorCode.RATE_LIMITED)


class Verdict(Enum):
    ALLOW = "allow"
    REFUSE = "refuse"
    CLOSE = "close"


class RateLimiter:
    def __init__(self, per_minute: int, grace: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.grace = grace
        self.window_s = window_s
        self._accepted: deque[float] = deque()
        self._refused: deque[float] = deque()

    def check(self, now: float | None = None) -> Verdict:
        now = time.monotonic() if now is None else now
        if self.per_minute <= 0:  # 0 turns the limit off
            return Verdict.ALLOW
        for times in (self._accepted, self._refused):
            while times and now - times[0] >= self.window_s:
                times.popleft()
        if len(self._accepted) < self.per_minute:
            self._accepted.append(now)
            return Verdict.ALLOW
        self._refused.append(now)
        return Verdict.CLOSE if len(self._refused) > self.grace else Verdict.REFUSE
