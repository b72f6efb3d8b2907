"""Fast tier: the live-capacity arithmetic, the lag watchdog's bounds and the utterance
machine's lag, with the figures a 2-core machine's tiny.en workers publish."""

from __future__ import annotations

import math

import pytest

from audio_service.segmenter import SegmenterOptions
from gateway.lag_watchdog import LagVerdict, LagWatch
from gateway.utterances import UtteranceMachine
from gateway.worker_reply import WorkerReply
from shared import protocol
from shared.capacity import (
    COLD_STREAMS_PER_WORKER,
    FINAL_HEAD_START_S,
    MAX_UTILISATION,
    MIN_STREAMS_PER_WORKER,
    JobCosts,
    admission_limit,
    ewma,
    final_wait_s,
    pool_capacity,
    usable_share,
    worker_streams,
)
from shared.errors import ErrorCode
from shared.heartbeats import WorkerInfo

TARGET_S, INTERVAL_S = 1.0, 1.0


def measured(final_rtf: float = 0.1, final_job_s: float = 0.3, partial_job_s: float = 0.2) -> JobCosts:
    return JobCosts(final_rtf=final_rtf, final_job_s=final_job_s, partial_job_s=partial_job_s)


def test_one_worker_carries_what_its_costs_allow() -> None:
    # Per stream 0.7 * (0.1 + 0.5 * 0.2) = 0.14 worker-s/s. A 0.3 s final queued 0.2 s after
    # speech ends has 0.5 s of slack; one worker may be busy 0.805 -> 5.75 streams.
    usable = usable_share(0.3, TARGET_S, 1)
    assert final_wait_s(usable, 1, 0.3) == pytest.approx(TARGET_S - FINAL_HEAD_START_S - 0.3, abs=1e-6)
    assert worker_streams(measured(), TARGET_S, INTERVAL_S) == pytest.approx(usable / 0.14)
    assert pool_capacity([measured()], TARGET_S, INTERVAL_S).streams == 5


def test_a_worker_joining_raises_capacity_and_one_dying_drops_it() -> None:
    """Two workers share one queue: a final waits less behind two than behind one, so
    each may be busier (here up to the cap, 0.85 / 0.14 = 6.07 streams each)."""
    two = pool_capacity([measured(), measured()], TARGET_S, INTERVAL_S)
    one = pool_capacity([measured()], TARGET_S, INTERVAL_S)
    assert (two.streams, two.workers, two.measured) == (12, 2, True)
    assert (one.streams, one.workers) == (5, 1)


def test_a_final_waits_longer_the_busier_the_pool_and_less_with_more_workers() -> None:
    waits = [final_wait_s(rho, 2, 0.4) for rho in (0.0, 0.3, 0.6, 0.8, 0.95)]
    assert waits[0] == 0.0 and waits == sorted(waits) and final_wait_s(1.0, 2, 0.4) == math.inf
    assert final_wait_s(0.7, 4, 0.4) < final_wait_s(0.7, 2, 0.4) < final_wait_s(0.7, 1, 0.4)
    # M/D/1 at 0.5: the textbook rho s / (2 (1 - rho)) = 0.5 s; Sakasegawa's is lower for c = 1.
    assert final_wait_s(0.5, 1, 1.0) <= 0.5
    shares = [usable_share(s, TARGET_S, 2) for s in (0.2, 0.4, 0.6, 0.79)]
    assert shares == sorted(shares, reverse=True) and shares[0] == MAX_UTILISATION
    # A final that, queued at the candidate's head start, alone fills the target: no room.
    assert usable_share(TARGET_S - FINAL_HEAD_START_S, TARGET_S, 2) == 0.0


def test_the_head_start_is_the_segmenters_candidate_tail() -> None:
    """The arithmetic credits a final with the candidate's head start: the audio service
    must still queue the candidate that long after speech ends."""
    assert SegmenterOptions().tail_s == FINAL_HEAD_START_S


def test_heartbeats_carry_the_figures_and_a_dead_worker_is_not_counted() -> None:
    """The gateway reads WorkerInfo back from heartbeats: only live keys exist, and an
    older worker's heartbeat without costs reads as a cold worker."""
    alive = WorkerInfo(id="w1", host="h", pid=1, costs=measured().as_dict())
    older = WorkerInfo(id="w2", host="h", pid=2)
    capacity = pool_capacity([JobCosts.from_dict(w.costs) for w in (alive, older)], TARGET_S, INTERVAL_S)
    assert (capacity.streams, capacity.measured) == (6 + COLD_STREAMS_PER_WORKER, False)
    assert JobCosts.from_dict({"final_rtf": "x", "final_job_s": -1}) == JobCosts()


def test_cold_start_uses_a_conservative_default_and_says_so() -> None:
    cold = pool_capacity([JobCosts(), JobCosts()], TARGET_S, INTERVAL_S)
    assert cold.streams == 2 * COLD_STREAMS_PER_WORKER
    assert not cold.measured and "cold-start default" in cold.describe()
    assert pool_capacity([], TARGET_S, INTERVAL_S).streams == 0


def test_slower_finals_or_a_tighter_target_carry_fewer_streams() -> None:
    base = worker_streams(measured(), TARGET_S, INTERVAL_S)
    slow = worker_streams(measured(final_rtf=0.3, final_job_s=0.6), TARGET_S, INTERVAL_S)
    tight = worker_streams(measured(), 0.5, INTERVAL_S)
    assert base is not None and slow is not None and tight is not None
    assert slow < base and tight < base
    # A final that alone takes the whole target leaves no room at all; the pool still
    # serves one stream per worker rather than refuse everyone.
    assert worker_streams(measured(final_job_s=1.2), TARGET_S, INTERVAL_S) == 0.0
    slowest = pool_capacity([measured(final_job_s=1.2)] * 2, TARGET_S, INTERVAL_S)
    assert (slowest.streams, slowest.measured) == (2 * MIN_STREAMS_PER_WORKER, True)


def test_partials_count_at_their_thinned_share_and_a_slower_cadence_costs_less() -> None:
    often = worker_streams(measured(partial_job_s=0.4), TARGET_S, 0.5)
    rarely = worker_streams(measured(partial_job_s=0.4), TARGET_S, 2.0)
    assert often is not None and rarely is not None and often < rarely
    # No partial done yet: one is priced as a final job, not as free.
    no_partials = worker_streams(JobCosts(final_rtf=0.1, final_job_s=0.3), TARGET_S, INTERVAL_S)
    assert no_partials == worker_streams(measured(partial_job_s=0.3), TARGET_S, INTERVAL_S)


def test_costs_are_running_means_finals_and_partials_apart() -> None:
    costs = JobCosts()
    costs.observe("final", took_s=0.4, audio_s=2.0)
    costs.observe("candidate", took_s=0.6, audio_s=2.0)
    costs.observe("partial", took_s=0.25, audio_s=1.0)
    assert costs.measured
    assert costs.final_job_s == ewma(0.4, 0.6) and costs.final_rtf == ewma(0.4, 0.6) / 2.0
    assert costs.partial_job_s == 0.25
    assert JobCosts.from_dict(costs.as_dict()) == costs


def test_a_finals_rtf_is_time_over_audio_not_a_mean_of_each_jobs_ratio() -> None:
    """A final's time is mostly its fixed window: a 1 s and a 4 s final that take 0.4 and
    0.5 s cost 0.9 s for 5 s of audio (0.18), where the mean of their ratios says 0.2625."""
    costs = JobCosts()
    for _ in range(50):  # long enough for the running means to settle on the pair
        costs.observe("final", took_s=0.4, audio_s=1.0)
        costs.observe("final", took_s=0.5, audio_s=4.0)
    assert costs.final_rtf == pytest.approx(0.18, abs=0.02)


def test_the_static_cap_applies_on_top_and_no_workers_admits_nothing() -> None:
    capacity = pool_capacity([measured(), measured()], TARGET_S, INTERVAL_S)
    assert admission_limit(capacity, 0) == admission_limit(capacity, 50)
    assert admission_limit(capacity, 0).reason == "capacity"
    assert (admission_limit(capacity, 3).streams, admission_limit(capacity, 3).reason) == (
        3,
        "max_live_streams",
    )
    none = pool_capacity([], TARGET_S, INTERVAL_S)
    assert (admission_limit(none, 3).streams, admission_limit(none, 3).reason) == (0, "no_workers")


def test_lag_watch_degrades_once_per_excursion_then_ends() -> None:
    watch = LagWatch(max_lag_s=3.0, end_lag_s=6.0)
    seen = [watch.check(lag) for lag in (0.5, 3.5, 4.0, 1.0, 3.2, 6.5)]
    assert seen == [
        LagVerdict.OK,
        LagVerdict.DEGRADED,
        LagVerdict.OK,
        LagVerdict.OK,
        LagVerdict.DEGRADED,
        LagVerdict.END,
    ]
    assert LagWatch(max_lag_s=0.0, end_lag_s=6.0).check(100.0) is LagVerdict.OK


def test_a_stream_sent_faster_than_real_time_is_reported_but_not_ended() -> None:
    """A client uploading 5 min of audio at 8x builds its backlog on purpose."""
    watch = LagWatch(max_lag_s=3.0, end_lag_s=6.0)
    assert watch.check(30.0, pace=8.0) is LagVerdict.DEGRADED
    assert watch.check(40.0, pace=8.0) is LagVerdict.OK
    assert watch.check(40.0, pace=1.0) is LagVerdict.END


def _machine() -> UtteranceMachine:
    return UtteranceMachine("s1", "tiny.en", lambda i: f"s1-u{i}")


def _final(index: int, seq: int, text: str) -> WorkerReply:
    message = protocol.transcript(
        text, final=True, utterance_id=f"s1-u{index}", language="en", source="live", start=0.0, end=1.0
    )
    return WorkerReply.parse({**message, "request_id": "s1", "index": index, "kind": "final", "seq": seq})


def test_lag_is_the_oldest_unanswered_final_s_wait() -> None:
    m = _machine()
    assert m.lag(10.0) == 0.0
    m.queued(0, 1, 0.0, 1.0, now=10.0)
    m.queued(1, 2, 1.5, 2.5, now=12.0)
    assert m.lag(14.0) == 4.0
    m.result(_final(0, 1, "one"), 14.0)
    assert m.lag(14.0) == 2.0  # utterance 1 waits since 12.0
    m.result(_final(1, 2, "two"), 15.0)
    assert m.lag(20.0) == 0.0


def test_abandon_answers_every_queued_final_once_then_stops() -> None:
    m = _machine()
    m.queued(0, 1, 0.0, 1.0, now=10.0)
    m.queued(1, 2, 1.5, 2.5, now=11.0)
    out = m.abandon(17.0, ErrorCode.STREAM_LAGGING, "behind")
    kinds = [type(e).__name__ for e in out]
    assert kinds == ["UtteranceFailed", "UtteranceFailed", "RecordingFailed", "RecordingStopped"]
    assert all(getattr(e, "code", "stream_lagging") == "stream_lagging" for e in out[:3])
    assert m.result(_final(0, 1, "late"), 18.0) == [] and m.abandon(18.0, ErrorCode.STREAM_LAGGING, "x") == []


def test_lag_watch_never_ends_a_stream_while_redis_recovers() -> None:
    watch = LagWatch(max_lag_s=3.0, end_lag_s=6.0)
    assert watch.check(10.0, recovering=True) is LagVerdict.DEGRADED  # told, counted, not ended
    assert watch.check(10.0, recovering=True) is LagVerdict.OK
    assert watch.check(10.0) is LagVerdict.END  # recovered, and still this far behind
