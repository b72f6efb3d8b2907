"""One client WebSocket connection, whatever its protocol: its reply channel, outbox,
rate limit, files, live recording and Redis-state handling.

A protocol is composed in, not subclassed: a :class:`ProtocolHandler` parses the client's
frames and calls the connection's operations (accept a file, start a recording, …), and
renders the typed :mod:`gateway.events` that the connection, its files and its recording
emit into its own messages. ``/ws`` is :class:`gateway.session.BrowserProtocol`,
``/v1/realtime`` :class:`gateway.realtime.session.RealtimeProtocol`; another live
protocol is one more handler (and renderer) and its route.

Messages to the client go through one outbox and one sender task, so replies from
pub/sub, progress and errors never interleave mid-frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway import event_metrics, events
from gateway.context import GatewayContext
from gateway.files import FileJobs
from gateway.lag_watchdog import LagVerdict, LagWatch
from gateway.live_sessions import LiveSession
from gateway.ratelimit import RateLimiter, Verdict
from gateway.recording import Recording
from shared import metrics
from shared.errors import ErrorCode, close_code
from shared.protocol import ProtocolError
from shared.redis_keys import new_reply_channel

log = structlog.get_logger()

MAX_INFLIGHT_FILES = 5
#: How often stuck finals are expired and the recording's lag is checked.
WATCH_INTERVAL_S = 1.0

#: Policy violation: the client floods the connection.
CLOSE_POLICY_VIOLATION = close_code(ErrorCode.RATE_LIMITED)
#: A client that closes with these meant to leave: its recording ends at once. Any other
#: end (1006: the connection was lost without a close frame) keeps it resumable.
CLEAN_CLOSE_CODES = (1000, 1001)
#: The connection's recording was resumed from another connection (application range).
CLOSE_SESSION_TAKEN_OVER = 4001


class ProtocolHandler(Protocol):
    async def opened(self) -> None:
        """The connection is set up; a protocol may greet the client."""

    def rate_exempt(self, message: dict[str, Any]) -> bool:
        """Whether a frame is the audio stream itself (not counted against the rate limit)."""

    async def on_text(self, text: str) -> None: ...

    async def on_binary(self, data: bytes) -> None: ...

    def render(self, event: events.Event) -> list[dict[str, Any]]:
        """The protocol's messages for one event (none for an event it has no use for)."""


class Connection:
    def __init__(
        self,
        websocket: WebSocket,
        ctx: GatewayContext,
        handler: Callable[[Connection], ProtocolHandler],
    ) -> None:
        self.ws = websocket
        self.ctx = ctx
        self.settings = ctx.settings
        self.reply_channel = new_reply_channel()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.files = FileJobs(ctx, self.reply_channel, self.emit, max_inflight=MAX_INFLIGHT_FILES)
        self.recording: Recording | None = None
        self.live_session: LiveSession | None = None
        self._dropped = False  # the connection was lost rather than closed by the client
        self._redis_recovering_until = 0.0  # monotonic time; see _on_redis_state
        self._tasks: set[asyncio.Task[None]] = set()
        self.lag_watch = LagWatch(ctx.settings.max_stream_lag_s, ctx.settings.stream_lag_end_s)
        self.limiter = RateLimiter(ctx.settings.rate_limit_per_minute, ctx.settings.rate_limit_grace)
        self.handler = handler(self)

    # --- what handlers use ------------------------------------------------------------

    def emit(self, event: events.Event) -> None:
        event_metrics.record(event)
        for message in self.handler.render(event):
            self.outbox.put_nowait(message)

    def push(self, message: dict[str, Any]) -> None:
        """A protocol's own message that no event stands for (pong, session.updated, …)."""
        self.outbox.put_nowait(message)

    def error(self, code: ErrorCode | str, message: str, **fields: Any) -> None:
        self.emit(events.RequestError.of(code, message, **fields))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def live_recording(self) -> Recording | None:
        """The recording audio may still go to, if any (not one that has ended)."""
        return self.recording if self.recording is not None and self.recording.live else None

    @property
    def recording_live(self) -> bool:
        return self.live_recording is not None

    async def start_recording(self, **options: Any) -> Recording:
        """A new live recording on this connection (see :class:`Recording` for ``options``),
        resumable from another connection (:mod:`gateway.live_sessions`); a previous,
        finished one releases its audio-service connection first."""
        await self._release_recording()
        sessions = self.ctx.sessions
        session, token = sessions.create()
        recording = Recording(self.ctx, session.sink, **options)
        session.recording = recording
        try:
            # Pool-wide admission first: a refused stream hears ``busy`` before any
            # audio-service stream is opened for it.
            await self.ctx.admission.acquire(recording.stream_id)
        except BaseException:
            await sessions.drop(session)
            raise
        try:
            await recording.start()
        except BaseException:
            await self.ctx.admission.release(recording.stream_id)
            await sessions.drop(session)
            raise
        # Held until the recording ends, on this connection or parked for a resume.
        self.ctx.admission.hold(recording.stream_id, recording.ended)
        self.lag_watch = LagWatch(self.settings.max_stream_lag_s, self.settings.stream_lag_end_s)
        sessions.attach(session, self.emit, self)
        self.recording, self.live_session = recording, session
        self.emit(
            events.RecordingStarted(
                recording.stream_id, recording.model, session.session_id, token, sessions.window_s
            )
        )
        return recording

    async def resume_recording(self, session_id: str, token: str, finals_received: int) -> Recording:
        """Take over a recording started on a connection that dropped (or is dropping):
        every final this client missed is sent again, in order, once."""
        if self.recording_live:
            raise ProtocolError(ErrorCode.ALREADY_RECORDING, "A recording is already running; stop it first")
        session = self.ctx.sessions.claim(session_id, token)
        previous = session.owner
        if isinstance(previous, Connection) and previous is not self:
            previous.recording, previous.live_session = None, None  # its client is back here
            previous.spawn_close(CLOSE_SESSION_TAKEN_OVER)
        await self._release_recording()
        recording = session.recording
        assert recording is not None
        self.ctx.sessions.attach(session, self.emit, self)
        self.recording, self.live_session = recording, session
        missed = session.replay(finals_received)
        self.emit(events.RecordingResumed(session_id, recording.model, recording.bytes_fed, len(missed)))
        for event in missed:
            self.emit(event)
        log.info("recording_resumed", session_id=session_id, replayed=len(missed))
        return recording

    async def _release_recording(self) -> None:
        if self.live_session is not None:
            await self.ctx.sessions.drop(self.live_session)
        elif self.recording is not None:
            await self.recording.close()
        self.recording, self.live_session = None, None

    def spawn_close(self, code: int) -> None:
        self.spawn(self._close(code))

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ctx.router.register(self.reply_channel, self._on_reply)
        self.ctx.router.add_listener(self._on_redis_state)
        background = [
            asyncio.create_task(self._send_forever()),
            asyncio.create_task(self.files.watch_deadlines()),
            asyncio.create_task(self._watch_recording()),
        ]
        try:
            await self.handler.opened()
            await self._receive_forever()
        finally:
            self.ctx.router.remove_listener(self._on_redis_state)
            await self.ctx.router.unregister(self.reply_channel)
            if self.live_session is not None and self._dropped:
                self.ctx.sessions.park(self.live_session)  # resumable for the window
            else:
                await self._release_recording()
            await self.files.aclose()
            for task in (*self._tasks, *background):
                task.cancel()
            for task in (*self._tasks, *background):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _receive_forever(self) -> None:
        while True:
            try:
                message = await self.ws.receive()
            except WebSocketDisconnect as exc:
                self._dropped = exc.code not in CLEAN_CLOSE_CODES
                return
            except RuntimeError:
                return
            if message["type"] == "websocket.disconnect":
                self._dropped = message.get("code") not in CLEAN_CLOSE_CODES
                return
            verdict = Verdict.ALLOW if self.handler.rate_exempt(message) else await self._rate_verdict()
            if verdict is Verdict.CLOSE:
                return
            if verdict is Verdict.REFUSE:
                continue
            try:
                if message.get("text") is not None:
                    await self.handler.on_text(message["text"])
                elif message.get("bytes") is not None:
                    await self.handler.on_binary(message["bytes"])
            except Exception:
                # A defect met by one message must not end the connection (and the
                # recording and files in flight on it): report it and read the next.
                log.exception("message_handling_failed")
                self.error(
                    ErrorCode.INTERNAL_ERROR, "This message could not be handled; the connection stays open"
                )

    async def _rate_verdict(self) -> Verdict:
        """Apply the rate limit: a refused message is answered ``rate_limited`` (and not
        parsed); on CLOSE the connection has been closed for flooding."""
        verdict = self.limiter.check()
        if verdict is Verdict.ALLOW:
            return verdict
        closing = verdict is Verdict.CLOSE
        self.error(
            ErrorCode.RATE_LIMITED,
            f"More than {self.settings.rate_limit_per_minute} messages in a minute; "
            + ("the connection is closed" if closing else "this one was refused"),
        )
        if closing:
            await self._close(CLOSE_POLICY_VIOLATION)
        return verdict

    async def _close(self, code: int) -> None:
        """Close after the queued replies are out (bounded wait), so the client sees why."""
        for _ in range(50):
            if self.outbox.empty():
                break
            await asyncio.sleep(0.02)
        with contextlib.suppress(Exception):
            await self.ws.close(code)

    async def _send_forever(self) -> None:
        while True:
            message = await self.outbox.get()
            try:
                await self.ws.send_json(message)
            except Exception:
                return  # the client went away; receive() will notice

    def _on_reply(self, reply: dict[str, Any]) -> None:
        self.files.on_reply(reply)  # late replies to finished requests are dropped there

    def _on_redis_state(self, state: str) -> None:
        """Tell the client while Redis is away and when it is back. What is in flight
        keeps waiting: the audio service queues again each job Redis lost and workers
        retry replies they could not publish (README, "Redis restarts"); the files' and
        the recording's watchdogs stay the backstop."""
        connected = state == "reconnected"
        self.emit(events.RedisState(connected))
        # Until then the lag watchdog does not end a stream (gateway/lag_watchdog.py).
        self._redis_recovering_until = (
            time.monotonic() + self.settings.stream_lag_end_s if connected else float("inf")
        )

    async def _watch_recording(self) -> None:
        """The lag watchdog, every second (the stuck-final watchdog is the recording's own:
        it runs while a session is parked too)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if (recording := self.live_recording) is not None:
                await self._watch_lag(recording)

    async def _watch_lag(self, recording: Recording) -> None:
        """The lag watchdog (:mod:`gateway.lag_watchdog`): never an unbounded backlog."""
        now = time.monotonic()
        lag = recording.lag(now)
        metrics.LIVE_STREAM_LAG.observe(lag)
        verdict = self.lag_watch.check(
            lag, recording.pace(now), recovering=now < self._redis_recovering_until
        )
        if verdict is LagVerdict.DEGRADED:
            metrics.LIVE_LAGGING.labels(outcome="degraded").inc()
            log.warning("stream_lagging", stream_id=recording.stream_id, lag_s=round(lag, 2))
        elif verdict is LagVerdict.END:
            metrics.LIVE_LAGGING.labels(outcome="ended").inc()
            log.warning("stream_lagging_ended", stream_id=recording.stream_id, lag_s=round(lag, 2))
            await recording.abandon(
                ErrorCode.STREAM_LAGGING,
                f"The results fell {lag:.1f} s behind the audio (limit {self.lag_watch.end_lag_s:g} s, "
                "S2T_STREAM_LAG_END_S); the recording is ended, start again shortly",
            )
