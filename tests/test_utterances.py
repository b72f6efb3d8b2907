"""The live utterance state machine (gateway/utterances.py), in-process: the races between
the audio service's notices and the workers' results, and what the client sees."""

from __future__ import annotations

from typing import Any

from gateway import events
from gateway.utterances import UtteranceMachine, UtteranceState
from gateway.worker_reply import WorkerReply
from shared import protocol
from shared.protocol import ErrorCode

STREAM = "s1"


def machine() -> UtteranceMachine:
    return UtteranceMachine(STREAM, "tiny.en", lambda i: f"{STREAM}-u{i}")


def reply(kind: str, index: int, seq: int, text: str = "", *, error: str | None = None) -> WorkerReply:
    if error is not None:
        message = protocol.error(error, "it failed", utterance_id=f"{STREAM}-u{index}")
    else:
        message = protocol.transcript(
            text,
            final=kind == "final",
            utterance_id=f"{STREAM}-u{index}",
            language="en",
            source="real_microphone",
            start=float(index),
            end=index + 0.5,
        )
    raw: dict[str, Any] = {**message, "request_id": STREAM, "index": index, "count": 0, "kind": kind}
    return WorkerReply.parse({**raw, "seq": seq, "enqueued_at": 100.0})


def finals(out: list[events.LiveEvent]) -> list[tuple[int, str]]:
    """What the client is told as settled, in order: (index, text or error code)."""
    return [
        (e.index, e.text if isinstance(e, events.FinalText) else f"!{e.code}")
        for e in out
        if isinstance(e, events.FinalText | events.UtteranceFailed)
    ]


def test_finals_finishing_out_of_order_are_released_in_stream_order() -> None:
    m = machine()
    out = m.queued(0, 1, 0.0, 1.0, now=0.0) + m.queued(1, 2, 1.0, 2.0, now=0.1)
    out += m.result(reply("final", 1, 2, "second"), now=0.2)
    assert finals(out) == []  # the second waits for the first
    assert m.state(1) is UtteranceState.READY
    out = m.result(reply("final", 0, 1, "first"), now=0.3)
    assert finals(out) == [(0, "first"), (1, "second")]
    assert m.state(0) is UtteranceState.FINAL and m.state(1) is UtteranceState.FINAL


def test_a_final_faster_than_its_notice_is_released_once() -> None:
    m = machine()
    out = m.result(reply("final", 0, 1, "hello"), now=0.0)
    assert finals(out) == [(0, "hello")]
    assert m.queued(0, 1, 0.0, 1.0, now=0.1) == []  # late notice: nothing more
    assert finals(m.result(reply("final", 0, 1, "hello"), now=0.2)) == []  # a duplicate: dropped


def test_a_candidate_result_becomes_the_final_whichever_arrives_first() -> None:
    before = machine()
    out = before.result(reply("candidate", 0, 3, "hi there"), now=0.0)
    assert [type(e) for e in out] == [events.PartialText] and out[0].whole  # type: ignore[union-attr]
    assert before.state(0) is UtteranceState.CANDIDATE
    out = before.queued(0, 3, 0.0, 1.0, now=0.1)
    assert [type(e) for e in out] == [events.UtteranceQueued, events.FinalText]
    assert finals(out) == [(0, "hi there")] and out[1].message["final"] is True  # type: ignore[union-attr]

    after = machine()
    after.queued(0, 3, 0.0, 1.0, now=0.0)
    assert after.state(0) is UtteranceState.QUEUED
    out = after.result(reply("candidate", 0, 3, "hi there"), now=0.5)
    assert finals(out) == [(0, "hi there")]
    assert out[0].waited_s == 0.5  # type: ignore[union-attr]


def test_a_revoked_candidate_is_never_the_final() -> None:
    """Speech resumed after the pause: the audio service revoked the candidate (seq 3) and
    the utterance's final is a later job (seq 5); the candidate's result came meanwhile."""
    m = machine()
    m.result(reply("candidate", 0, 3, "I went"), now=0.0)
    out = m.queued(0, 5, 0.0, 2.0, now=0.1)
    assert finals(out) == []
    assert finals(m.result(reply("candidate", 0, 3, "I went"), now=0.2)) == []  # late duplicate
    assert finals(m.result(reply("final", 0, 5, "I went home"), now=0.3)) == [(0, "I went home")]


def test_a_cleared_utterance_voids_its_results() -> None:
    m = machine()
    m.result(reply("partial", 0, 1, "noise"), now=0.0)
    out = m.cleared(0, seq=2)
    assert out == [events.UtteranceCleared(0)] and m.state(0) is UtteranceState.REVOKED
    assert m.result(reply("partial", 0, 2, "noise again"), now=0.1) == []
    assert m.result(reply("candidate", 0, 2, "noise"), now=0.1) == []
    m.speech_started(0, audio_ms=3000)  # the index is used again by the next speech
    assert m.state(0) is UtteranceState.OPEN
    shown = m.result(reply("partial", 0, 3, "real words"), now=0.2)
    assert [e.text for e in shown] == ["real words"]  # type: ignore[union-attr]


def test_partials_show_only_newer_text_and_never_after_the_final() -> None:
    m = machine()
    assert len(m.result(reply("partial", 0, 2, "b"), now=0.0)) == 1
    assert m.result(reply("partial", 0, 1, "a"), now=0.0) == []  # older than what is shown
    assert m.state(0) is UtteranceState.PARTIAL
    m.result(reply("final", 0, 3, "final"), now=0.1)
    assert m.result(reply("partial", 0, 4, "late"), now=0.2) == []
    assert m.result(reply("partial", 0, 1, "x", error="transcription_failed"), now=0.2) == []


def test_a_failed_partial_is_not_shown_and_the_final_answers() -> None:
    m = machine()
    assert m.result(reply("partial", 0, 1, error="model_unavailable"), now=0.0) == []
    m.queued(0, 2, 0.0, 1.0, now=0.0)
    out = m.result(reply("final", 0, 2, error="model_unavailable"), now=0.1)
    assert finals(out) == [(0, "!model_unavailable")]
    assert m.state(0) is UtteranceState.FAILED


def test_a_worker_lost_mid_final_expires_in_order_and_stop_completes() -> None:
    m = machine()
    m.queued(0, 1, 0.0, 1.0, now=0.0)
    m.queued(1, 2, 1.0, 2.0, now=1.0)
    m.result(reply("final", 1, 2, "second"), now=1.5)
    assert m.stopped(2, now=2.0) == []  # stop while finals are pending: not yet
    assert finals(m.expire(now=5.0, max_wait_s=10.0, code=ErrorCode.TIMEOUT, message="late")) == []
    out = m.expire(now=20.0, max_wait_s=10.0, code=ErrorCode.TIMEOUT, message="late")
    assert finals(out) == [(0, "!timeout"), (1, "second")]
    assert out[0].waited_s == 20.0  # type: ignore[union-attr]  # from its notice to its error
    assert out[-1] == events.RecordingStopped("tiny.en", 2)
    assert m.ended and m.result(reply("final", 0, 1, "too late"), now=21.0) == []


def test_the_reapers_worker_lost_reply_is_the_utterances_one_answer() -> None:
    m = machine()
    m.queued(0, 1, 0.0, 1.0, now=0.0)
    out = m.result(reply("final", 0, 1, error="worker_lost"), now=1.0)
    assert finals(out) == [(0, "!worker_lost")]
    assert m.expire(now=100.0, max_wait_s=1.0, code=ErrorCode.TIMEOUT, message="x") == []


def test_a_redis_restart_costs_nothing_queued_finals_wait_and_a_second_answer_is_ignored() -> None:
    """Redis away: the finals stay queued (the audio service queues lost jobs again), the
    watchdog waits its full time, and the requeued job's second answer shows nothing."""
    m = machine()
    m.queued(0, 1, 0.0, 1.0, now=0.0)
    m.queued(1, 2, 1.0, 2.0, now=0.0)
    assert m.expire(now=5.0, max_wait_s=660.0, code=ErrorCode.TIMEOUT, message="late") == []
    assert finals(m.result(reply("final", 1, 2, "second"), now=6.0)) == []  # waits for the first
    assert finals(m.result(reply("final", 0, 1, "first"), now=6.1)) == [(0, "first"), (1, "second")]
    assert m.result(reply("final", 0, 1, "first again"), now=7.0) == []
    assert m.result(reply("final", 1, 2, "second again"), now=7.0) == []


def test_stop_with_nothing_pending_ends_at_once_and_replies_after_are_dropped() -> None:
    m = machine()
    m.queued(0, 1, 0.0, 1.0, now=0.0)
    m.result(reply("final", 0, 1, "only"), now=0.1)
    assert m.stopped(1, now=0.2) == [events.RecordingStopped("tiny.en", 1)]
    assert m.result(reply("partial", 1, 2, "after the client left"), now=0.3) == []
    assert m.stopped(1, now=0.4) == []  # ends once


def test_the_audio_service_lost_mid_stream_fails_and_ends_once() -> None:
    m = machine()
    m.queued(0, 1, 0.0, 1.0, now=0.0)
    out = m.lost()
    assert [type(e) for e in out] == [events.RecordingFailed, events.RecordingStopped]
    assert out[0].code == ErrorCode.AUDIO_SERVICE_UNAVAILABLE  # type: ignore[union-attr]
    assert m.lost() == []
    clean = machine()
    clean.stopped(0, now=0.0)
    assert clean.lost() == []  # the connection closing after ``stopped`` is the normal end
