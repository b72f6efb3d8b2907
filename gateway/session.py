"""One browser WebSocket connection: its reply channel, its files, its model.

Messages to the client go through one outbox and one sender task, so replies from
pub/sub, progress and errors never interleave mid-frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.context import GatewayContext
from gateway.files import FileJobs
from gateway.model_loading import load_across_pool, validate_model_name, validate_request
from gateway.ratelimit import RateLimiter, Verdict
from gateway.recording import Recording
from shared import metrics, protocol
from shared.heartbeats import live_workers
from shared.protocol import ErrorCode, ProtocolError
from shared.redis_keys import new_reply_channel

log = structlog.get_logger()

MAX_INFLIGHT_FILES = 5

#: Policy violation: the client floods the connection.
CLOSE_POLICY_VIOLATION = 1008


class Session:
    def __init__(self, websocket: WebSocket, ctx: GatewayContext) -> None:
        self.ws = websocket
        self.ctx = ctx
        self.settings = ctx.settings
        self.reply_channel = new_reply_channel()
        self.model = ctx.settings.model
        self.language: str | None = None
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.files = FileJobs(ctx, self.reply_channel, self.send, max_inflight=MAX_INFLIGHT_FILES)
        self.recording: Recording | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.limiter = RateLimiter(ctx.settings.rate_limit_per_minute, ctx.settings.rate_limit_grace)

    # --- lifecycle -----------------------------------------------------------------

    async def run(self) -> None:
        await self.ctx.router.register(self.reply_channel, self._on_reply)
        self.ctx.router.add_listener(self._on_redis_state)
        background = [
            asyncio.create_task(self._send_forever()),
            asyncio.create_task(self.files.watch_deadlines()),
            asyncio.create_task(self._watch_recording()),
        ]
        try:
            await self._receive_forever()
        finally:
            self.ctx.router.remove_listener(self._on_redis_state)
            await self.ctx.router.unregister(self.reply_channel)
            if self.recording is not None:
                await self.recording.close()
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
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            verdict = Verdict.ALLOW if self._rate_exempt(message) else await self._rate_verdict()
            if verdict is Verdict.CLOSE:
                return
            if verdict is Verdict.REFUSE:
                continue
            try:
                if message.get("text") is not None:
                    await self._on_text(message["text"])
                elif message.get("bytes") is not None:
                    await self._on_binary(message["bytes"])
            except Exception:
                # A defect met by one message must not end the connection (and the
                # recording and files in flight on it): report it and read the next.
                log.exception("message_handling_failed")
                self._internal_error("This message could not be handled; the connection stays open")

    def _internal_error(self, message: str) -> None:
        self.send(protocol.error(ErrorCode.INTERNAL_ERROR, message))

    def _rate_exempt(self, message: dict[str, Any]) -> bool:
        """Live audio is not counted against the message rate: MediaRecorder sends four
        chunks a second on its own."""
        return message.get("bytes") is not None and self._recording_live()

    def _recording_live(self) -> bool:
        return self.recording is not None and not self.recording.ended.is_set()

    async def _rate_verdict(self) -> Verdict:
        """Apply the rate limit: a refused message is answered ``rate_limited`` (and not
        parsed); on CLOSE the connection has been closed for flooding."""
        verdict = self.limiter.check()
        if verdict is Verdict.ALLOW:
            return verdict
        closing = verdict is Verdict.CLOSE
        self.send(
            protocol.error(
                ErrorCode.RATE_LIMITED,
                f"More than {self.settings.rate_limit_per_minute} messages in a minute; "
                + ("the connection is closed" if closing else "this one was refused"),
            )
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

    def send(self, message: dict[str, Any]) -> None:
        metrics.record_client_message(message)
        self.outbox.put_nowait(message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_reply(self, reply: dict[str, Any]) -> None:
        if self.recording is not None and self.recording.on_reply(reply):
            return
        self.files.on_reply(reply)  # late replies to finished requests are dropped there

    def _on_redis_state(self, state: str) -> None:
        """Tell the client while Redis is away; once back, answer what was in flight with
        an error (replies published meanwhile are lost), so nothing waits forever."""
        self.send(protocol.status(state, redis=state == "reconnected", model=self.model))
        if state != "reconnected":
            return
        message = "Redis restarted while this was in flight; send it again"
        self.files.fail_inflight(ErrorCode.REDIS_UNAVAILABLE, message)
        if self.recording is not None and not self.recording.ended.is_set():
            self.recording.expire(time.monotonic(), -1.0, ErrorCode.REDIS_UNAVAILABLE, message)

    # --- client messages --------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        try:
            msg = protocol.parse_client_message(text)
            metrics.WS_MESSAGES.labels(command=msg.command).inc()
            await self._dispatch(msg)
        except ProtocolError as exc:
            self.send(protocol.error(exc.code, exc.message, request_id=exc.request_id))

    async def _dispatch(self, msg: protocol.ClientMessage) -> None:
        match msg:
            case protocol.Ping():
                self.send(protocol.pong())
            case protocol.GetStatus():
                self._spawn(self._send_status())
            case protocol.ProcessAudio():
                audio = protocol.decode_base64_audio(msg.audio_data, self.settings.max_audio_bytes)
                self.files.accept(
                    audio,
                    language=msg.language,
                    task=msg.task,
                    model=msg.model or self.model,
                    client_request_id=msg.request_id,
                )
            case protocol.LoadModel():
                validate_model_name(msg.model_name)
                self._spawn(self._load_model(msg.model_name))
            case protocol.StartRecording():
                await self._start_recording(msg)
            case protocol.StopRecording():
                if self.recording is None or self.recording.ended.is_set():  # nothing to flush
                    self.send(protocol.status("Recording stopped", recording=False, model=self.model))
                else:
                    await self.recording.stop()

    async def _on_binary(self, data: bytes) -> None:
        metrics.WS_MESSAGES.labels(command="binary").inc()
        try:
            protocol.check_audio_size(data, self.settings.max_audio_bytes)
            if self.recording is not None and not self.recording.ended.is_set():
                await self.recording.feed(data)
                return
            self.files.accept(
                data, language=self.language, task="transcribe", model=self.model, client_request_id=None
            )
        except ProtocolError as exc:
            self.send(protocol.error(exc.code, exc.message))

    # --- live recording -----------------------------------------------------------------

    async def _start_recording(self, msg: protocol.StartRecording) -> None:
        if self.recording is not None and not self.recording.ended.is_set():
            raise ProtocolError(ErrorCode.ALREADY_RECORDING, "A recording is already running; stop it first")
        model = msg.model or self.model
        language = validate_request(model, msg.language, msg.task)
        if self.recording is not None:  # the previous, finished one: release its connection
            await self.recording.close()
        recording = Recording(
            self.ctx,
            self.reply_channel,
            self.send,
            language=language,
            task=msg.task,
            model=model,
            fmt=msg.format,
        )
        await recording.start()
        self.recording = recording
        self.language = language
        self.send(
            protocol.status("Recording started", recording=True, model=model, stream_id=recording.stream_id)
        )

    async def _watch_recording(self) -> None:
        max_wait = self.settings.job_ttl_s + self.settings.job_timeout_s
        while True:
            await asyncio.sleep(2.0)
            if self.recording is not None:
                self.recording.expire(time.monotonic(), max_wait)

    # --- models and status ----------------------------------------------------------------

    async def _load_model(self, name: str) -> None:
        async def progress(message: dict[str, Any]) -> None:
            self.send(message)

        try:
            loaded = await load_across_pool(self.ctx, name, progress)
        except ProtocolError as exc:
            self.send(protocol.error(exc.code, exc.message))
            return
        self.model = name
        self.send(loaded)

    async def _send_status(self) -> None:
        try:
            workers = len(await live_workers(self.ctx.redis))
        except Exception:
            workers = 0
        self.send(
            protocol.status(
                "Ready" if workers else "No transcription workers are running",
                recording=self.recording is not None and not self.recording.ended.is_set(),
                processing=bool(self.files.pending),
                model=self.model,
                workers=workers,
            )
        )
