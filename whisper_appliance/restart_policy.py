"""When ``whisper-appliance up`` restarts a child that exited, and when it gives up.

Pure logic, fed exit times, so the policy is tested without starting a process
(tests/test_up_restart_policy.py); :mod:`whisper_appliance.supervisor` applies it.

Crash loop, precisely: a child that exits more than ``limit`` times within any
``window_s`` seconds (the exits are counted when they happen, the one just seen
included). Each exit below that is answered with a restart after
``backoff_s * 2 ** (exits in the window - 1)`` seconds, at most ``backoff_max_s``: a child
that ran fine for longer than the window comes back after ``backoff_s``, one that keeps
dying waits longer each time. ``limit`` 0 restores the old behaviour: any exit stops ``up``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from shared.config import Settings


@dataclass(frozen=True)
class RestartPolicy:
    limit: int = 5
    window_s: float = 120.0
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(
            limit=max(0, settings.restart_limit),
            window_s=max(0.0, settings.restart_window_s),
            backoff_s=max(0.0, settings.restart_backoff_s),
            backoff_max_s=max(0.0, settings.restart_backoff_max_s),
        )

    def describe(self) -> str:
        return f"more than {self.limit} exit(s) within {self.window_s:g} s"


@dataclass(frozen=True)
class Restart:
    """Start the child again after ``delay_s``; ``exits_in_window`` counts this exit."""

    delay_s: float
    exits_in_window: int


@dataclass(frozen=True)
class GiveUp:
    """The child crash-loops; ``reason`` says how, for the log line ``up`` stops with."""

    reason: str


@dataclass
class ExitHistory:
    """One child's exits within the policy's window, and how often it was restarted."""

    policy: RestartPolicy
    exits: deque[float] = field(default_factory=deque)
    restarts: int = 0

    def on_exit(self, now: float) -> Restart | GiveUp:
        """``now``: a monotonic time of the exit. Decides, and counts the restart it grants."""
        while self.exits and now - self.exits[0] > self.policy.window_s:
            self.exits.popleft()
        self.exits.append(now)
        count = len(self.exits)
        if count > self.policy.limit:
            return GiveUp(
                f"{count} exits within {self.policy.window_s:g} s, a crash loop ({self.policy.describe()})"
            )
        self.restarts += 1
        delay = min(self.policy.backoff_max_s, self.policy.backoff_s * 2 ** (count - 1))
        return Restart(delay_s=delay, exits_in_window=count)
