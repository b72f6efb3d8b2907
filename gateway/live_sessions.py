"""Live recordings that outlive a dropped connection for ``S2T_RESUME_WINDOW_S``, so that a
client that reconnects continues the same recording and misses no final.

A connection that closes while its recording is live (or just ended) parks the session
here instead of closing it: the audio-service stream stays open, workers go on
answering, and every final, utterance error and the end of the recording is kept in the
session's journal. ``resume`` with the session id and its token attaches the recording
to the new connection and replays the journal from the client's ``finals_received``,
each entry exactly once. After the window the recording is closed (its audio-service
stream cancelled, queued jobs skipped) and the id answers ``resume_expired``.

The token is a secret bound to the session and to the API key in force: only its HMAC
(keyed with ``S2T_API_KEY``, empty when none) is kept, compared with
:func:`hmac.compare_digest`. A wrong token answers ``resume_invalid`` and says nothing of
the session. An unknown id answers ``resume_expired``: an id nobody holds any more and a
forged one look the same from outside.

Sessions live in this gateway process: with several gateway replicas a resume must
reach the replica that holds the recording (route by client address); elsewhere it
answers ``resume_expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from gateway import events
from shared.errors import ErrorCode
from shared.protocol import ProtocolError

if TYPE_CHECKING:
    from gateway.recording import Recording

log = structlog.get_logger()

Emit = Callable[[events.Event], None]

#: Finals kept per session for replay; a client further behind than this gets what is kept.
JOURNAL_LIMIT = 5000


@dataclass(eq=False)
class LiveSession:
    session_id: str
    token_digest: bytes
    recording: Recording | None = None
    owner: Any = None  # the connection it is attached to (None: parked)
    _emit: Emit | None = None
    _journal: deque[events.FinalText | events.UtteranceFailed] = field(
        default_factory=lambda: deque(maxlen=JOURNAL_LIMIT)
    )
    _released: int = 0  # finals and utterance errors released so far
    _stopped: events.RecordingStopped | None = None
    _expiry: asyncio.Task[None] | None = None

    def sink(self, event: events.LiveEvent) -> None:
        """The recording's events: journaled where a resume must replay them, passed on to
        the connection attached now (none while parked)."""
        if isinstance(event, events.FinalText | events.UtteranceFailed):
            self._journal.append(event)
            self._released += 1
        elif isinstance(event, events.RecordingStopped):
            self._stopped = event
        if self._emit is not None:
            self._emit(event)

    def replay(self, finals_received: int) -> list[events.LiveEvent]:
        """What a client that has ``finals_received`` of this recording's finals missed."""
        first_kept = self._released - len(self._journal)
        skip = max(0, finals_received - first_kept)
        out: list[events.LiveEvent] = list(self._journal)[skip:]
        return out + ([self._stopped] if self._stopped is not None else [])


class LiveSessions:
    def __init__(self, window_s: float, api_key: str | None) -> None:
        self.window_s = window_s
        self._key = (api_key or "").encode()
        self._sessions: dict[str, LiveSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def _digest(self, token: str) -> bytes:
        return hmac.new(self._key, token.encode(), hashlib.sha256).digest()

    def create(self) -> tuple[LiveSession, str]:
        """A new session and its resume token (given to the client once, never stored)."""
        token = secrets.token_urlsafe(32)
        session = LiveSession(uuid.uuid4().hex, self._digest(token))
        self._sessions[session.session_id] = session
        return session, token

    def attach(self, session: LiveSession, emit: Emit, owner: object) -> None:
        if session._expiry is not None:
            session._expiry.cancel()
            session._expiry = None
        session._emit, session.owner = emit, owner

    def claim(self, session_id: str, token: str) -> LiveSession:
        """The session a resume names, if the token is its own."""
        session = self._sessions.get(session_id)
        if session is None:
            raise ProtocolError(
                ErrorCode.RESUME_EXPIRED,
                f"No live session with that id: its {self.window_s:g} s resume window has passed",
            )
        if not hmac.compare_digest(self._digest(token), session.token_digest):
            log.warning("resume_refused")
            raise ProtocolError(ErrorCode.RESUME_INVALID, "The resume token does not match the session")
        return session

    def park(self, session: LiveSession) -> None:
        """Its connection is gone: keep the recording for the window, then close it."""
        session._emit, session.owner = None, None
        if self.window_s <= 0:
            self._spawn_close(session, 0.0)
            return
        log.info("live_session_parked", session_id=session.session_id, window_s=self.window_s)
        self._spawn_close(session, self.window_s)

    def _spawn_close(self, session: LiveSession, delay_s: float) -> None:
        async def close_later() -> None:
            await asyncio.sleep(delay_s)
            if session.owner is None:
                await self.drop(session)
                log.info("live_session_expired", session_id=session.session_id)

        session._expiry = asyncio.create_task(close_later())

    async def drop(self, session: LiveSession) -> None:
        """The session is over (expired, or its connection started a new recording)."""
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]
        if session.recording is not None:
            await session.recording.close()
        session._emit = None

    async def aclose(self) -> None:
        for session in list(self._sessions.values()):
            if session._expiry is not None:
                session._expiry.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await session._expiry
            await self.drop(session)
