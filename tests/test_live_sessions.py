"""Resumable live sessions (gateway/live_sessions.py), in-process: tokens, replay of what a
client missed, the window."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from gateway import events
from gateway.live_sessions import LiveSessions
from gateway.recording import Recording
from shared.errors import ErrorCode
from shared.protocol import ProtocolError


class FakeRecording:
    """Stands in for the I/O side only: what the registry asks of a recording."""

    def __init__(self) -> None:
        self.live = True
        self.closed = False

    async def close(self) -> None:
        self.closed, self.live = True, False


def final(index: int) -> events.FinalText:
    return events.FinalText(index, f"s-u{index}", {"type": "transcript", "transcript": f"t{index}"})


def open_session(sessions: LiveSessions) -> tuple[Any, str, FakeRecording, list[events.Event]]:
    session, token = sessions.create()
    recording = FakeRecording()
    session.recording = cast(Recording, recording)
    seen: list[events.Event] = []
    sessions.attach(session, seen.append, owner=object())
    return session, token, recording, seen


def test_tokens_are_secret_and_checked() -> None:
    sessions = LiveSessions(30.0, api_key=None)
    session, token, _, _ = open_session(sessions)
    _, other_token, _, _ = open_session(sessions)
    assert len(token) >= 40 and token != other_token
    assert sessions.claim(session.session_id, token) is session
    for wrong in ("", token[:-1] + ("A" if token[-1] != "A" else "B"), other_token):
        with pytest.raises(ProtocolError) as refused:
            sessions.claim(session.session_id, wrong)
        assert refused.value.code is ErrorCode.RESUME_INVALID
        assert session.session_id not in refused.value.message and token not in refused.value.message
    with pytest.raises(ProtocolError) as unknown:
        sessions.claim("0" * 32, token)
    assert unknown.value.code is ErrorCode.RESUME_EXPIRED


def test_a_token_is_bound_to_the_api_key() -> None:
    issued = LiveSessions(30.0, api_key="key-one")
    session, token, _, _ = open_session(issued)
    rotated = LiveSessions(30.0, api_key="key-two")
    rotated._sessions[session.session_id] = session  # the same session, another key in force
    with pytest.raises(ProtocolError) as refused:
        rotated.claim(session.session_id, token)
    assert refused.value.code is ErrorCode.RESUME_INVALID


async def test_replay_sends_each_missed_final_once_in_order_and_the_end() -> None:
    sessions = LiveSessions(30.0, api_key=None)
    session, _, _, seen = open_session(sessions)
    for i in range(3):
        session.sink(final(i))
    session.sink(events.PartialText(3, "s-u3", {"transcript": "par"}))
    assert [type(e) for e in seen] == [events.FinalText] * 3 + [events.PartialText]
    sessions.park(session)
    session.sink(final(3))  # answered while nobody was connected
    session.sink(events.RecordingStopped("tiny.en", 4))
    assert len(seen) == 4  # nothing went to the dropped connection
    missed = session.replay(finals_received=2)
    assert [getattr(e, "index", None) for e in missed] == [2, 3, None]
    assert isinstance(missed[-1], events.RecordingStopped)
    assert [getattr(e, "index", None) for e in session.replay(10)] == [None]  # nothing twice
    await sessions.aclose()


async def test_a_parked_session_expires_after_the_window() -> None:
    sessions = LiveSessions(0.2, api_key=None)
    session, token, recording, _ = open_session(sessions)
    kept, kept_token, kept_recording, _ = open_session(sessions)
    sessions.park(session)
    sessions.park(kept)
    await asyncio.sleep(0.05)
    sessions.attach(sessions.claim(kept.session_id, kept_token), lambda e: None, owner=object())
    await asyncio.sleep(0.3)
    assert recording.closed and not kept_recording.closed
    with pytest.raises(ProtocolError) as expired:
        sessions.claim(session.session_id, token)
    assert expired.value.code is ErrorCode.RESUME_EXPIRED
    await sessions.aclose()
    assert kept_recording.closed and len(sessions) == 0
