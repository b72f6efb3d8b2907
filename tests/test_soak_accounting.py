"""The soak benchmark's accounting (bench/soak.py): what counts as lost, duplicated or
out of order in one recording's messages. Pure: no service."""

from __future__ import annotations

from typing import Any

from bench.soak import summarise_recording


def final(index: int, text: str = "words") -> dict[str, Any]:
    return {"type": "transcript", "final": True, "utterance_id": f"s1-u{index}", "transcript": text}


def stopped(finals: int) -> dict[str, Any]:
    return {"type": "status", "message": "Recording stopped", "recording": False, "finals": finals}


def test_every_final_once_is_nothing_lost() -> None:
    summary = summarise_recording([final(0, "a"), final(1, "b"), stopped(2)])
    assert (summary["accepted"], summary["delivered"], summary["lost"], summary["duplicates"]) == (2, 2, 0, 0)
    assert summary["text"] == "a b" and summary["stopped"]


def test_a_final_the_service_counted_but_never_sent_is_lost() -> None:
    summary = summarise_recording([final(0), stopped(2)])
    assert (summary["lost"], summary["delivered"]) == (1, 1)


def test_a_final_sent_twice_is_a_duplicate_and_replayed_order_is_checked() -> None:
    summary = summarise_recording([final(0), final(1), final(1), stopped(2)])
    assert (summary["duplicates"], summary["lost"], summary["out_of_order"]) == (1, 0, 0)
    assert summarise_recording([final(1), final(0), stopped(2)])["out_of_order"] == 1


def test_an_utterance_answered_with_an_error_is_delivered_but_counted_apart() -> None:
    error = {"type": "error", "code": "worker_lost", "utterance_id": "s1-u1", "message": "…"}
    summary = summarise_recording([final(0), error, stopped(2)])
    assert (summary["delivered"], summary["answered_with_error"], summary["errors"]) == (
        2,
        1,
        ["worker_lost"],
    )


def test_a_recording_ended_by_an_error_is_told_not_lost() -> None:
    error = {"type": "error", "code": "audio_service_unavailable", "message": "start again"}
    summary = summarise_recording([final(0), error])
    assert (summary["ended_by"], summary["lost"], summary["accepted"]) == ("audio_service_unavailable", 0, 1)


def test_an_utterance_id_of_another_shape_is_named_not_fatal() -> None:
    """The compose soak once lost three recordings' counts to an IndexError here."""
    messages = [final(1), {"type": "error", "code": "timeout", "utterance_id": "odd"}, stopped(2)]
    summary = summarise_recording(messages)
    assert summary["odd_ids"] == ["odd"] and summary["delivered"] == 2 and summary["lost"] == 0
