"""One browser WebSocket connection: its reply channel, its in-flight files, its model.

Messages to the client go through one outbox and one sender task, so replies from
pub/sub, progress and errors never interleave mid-frame. Every uploaded file ends in
one final per piece (or an error per piece) and then "Processing complete".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.context import GatewayContext
from gateway.model_loading import load_across_pool, validate_model_name
from gateway.pending import PendingRequest
from shared import models, protocol
from shared.heartbeats import live_workers
from shared.protocol import ErrorCode, ProtocolError
from shared.redis_keys import new_reply_channel

log = structlog.get_logger()

WATCHDOG_INTERVAL_S = 2.0
MAX_INFLIGHT_FILES = 5


class Session:
    def __init__(self, websocket: WebSocket, ctx: GatewayContext) -> None:
        self.ws = websocket
        self.ctx = ctx
        self.settings = ctx.settings
        self.reply_channel = new_reply_channel()
        self.model = ctx.settings.model
        self.language: str | None = None
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.pending: dict[str, PendingRequest] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------

    async def run(self) -> None:
        await self.ctx.router.register(self.reply_channel, self._on_reply)
        sender = asyncio.create_task(self._send_forever())
        watchdog = asyncio.create_task(self._watch_deadlines())
        try:
            await self._receive_forever()
        finally:
            await self.ctx.router.unregister(self.reply_channel)
            for task in (*self._tasks, watchdog, sender):
                task.cancel()
            for task in (*self._tasks, watchdog, sender):
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
            if message.get("text") is not None:
                await self._on_text(message["text"])
            elif message.get("bytes") is not None:
                await self._on_binary(message["bytes"])

    async def _send_forever(self) -> None:
        while True:
            message = await self.outbox.get()
            try:
                await self.ws.send_json(message)
            except Exception:
                return  # the client went away; receive() will notice

    def send(self, message: dict[str, Any]) -> None:
        self.outbox.put_nowait(message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- client messages --------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        try:
            msg = protocol.parse_client_message(text)
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
                self._accept_file(audio, msg.language, msg.task, msg.model, msg.request_id)
            case protocol.LoadModel():
                validate_model_name(msg.model_name)
                self._spawn(self._load_model(msg.model_name))
            case protocol.StartRecording() | protocol.StopRecording():
                raise ProtocolError(
                    ErrorCode.NOT_SUPPORTED, "Live recording is not supported by this server yet"
                )

    async def _on_binary(self, data: bytes) -> None:
        try:
            protocol.check_audio_size(data, self.settings.max_audio_bytes)
            self._accept_file(data, self.language, "transcribe", None, None)
        except ProtocolError as exc:
            self.send(protocol.error(exc.code, exc.message))

    # --- files -----------------------------------------------------------------------

    def _accept_file(
        self, audio: bytes, language: str | None, task: str, model: str | None, client_request_id: str | None
    ) -> None:
        """Check what can be checked at once, then decode and queue in the background."""
        model_name = model or self.model
        try:
            spec = validate_model_name(model_name)
            language = protocol.normalize_language(language)
            models.check_request(model_name, spec.multilingual, language, task)
        except models.UnsupportedRequestError as exc:
            raise ProtocolError(ErrorCode(exc.code), str(exc), request_id=client_request_id) from None
        except ProtocolError as exc:
            exc.request_id = client_request_id
            raise
        if len(self.pending) >= MAX_INFLIGHT_FILES:
            raise ProtocolError(
                ErrorCode.BUSY, f"{MAX_INFLIGHT_FILES} files are already in flight on this connection; "
                "wait for one to complete", request_id=client_request_id)  # fmt: skip
        pending = PendingRequest(
            internal_id=uuid.uuid4().hex,
            client_request_id=client_request_id,
            deadline=time.monotonic() + self.settings.job_ttl_s + self.settings.job_timeout_s,
        )
        self.pending[pending.internal_id] = pending
        self._spawn(self._submit(pending, audio, language, task, model_name))

    async def _submit(self, pending: PendingRequest, audio: bytes, language: str | None, task: str,
                      model: str) -> None:  # fmt: skip
        self.send(protocol.status("Processing audio", processing=True, request_id=pending.client_request_id))
        try:
            submitted = await self.ctx.audio.submit_file(
                audio, reply_channel=self.reply_channel, request_id=pending.internal_id,
                language=language, task=task, model=model, source="upload",
            )  # fmt: skip
        except ProtocolError as exc:
            self.pending.pop(pending.internal_id, None)
            self.send(protocol.error(exc.code, exc.message, request_id=pending.client_request_id))
            return
        pending.utterance_ids = [p["utterance_id"] for p in submitted.pieces]
        if not submitted.pieces:  # no speech: say so rather than send silence to the model
            pending.count = 0
            self.send(self._no_speech_transcript(pending, submitted.duration_s))
            self._finish(pending)
            return
        pending.count = len(submitted.pieces)
        if pending.done:
            self._finish(pending)

    def _no_speech_transcript(self, pending: PendingRequest, duration_s: float) -> dict[str, Any]:
        message = protocol.transcript(
            "", final=True, utterance_id=pending.internal_id, language=None, source="upload",
            start=0.0, end=duration_s, no_speech=True,
            latency_ms=round((time.monotonic() - pending.received_at) * 1000),
        )  # fmt: skip
        if pending.client_request_id is not None:
            message["request_id"] = pending.client_request_id
        return message

    def _on_reply(self, reply: dict[str, Any]) -> None:
        pending = self.pending.get(str(reply.get("request_id")))
        if pending is None:
            return  # a late answer to a request that already timed out
        for message in pending.add(reply):
            self.send(message)
        if pending.done:
            self._finish(pending)

    def _finish(self, pending: PendingRequest) -> None:
        if self.pending.pop(pending.internal_id, None) is not None:
            self.send(pending.completion())

    async def _watch_deadlines(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            now = time.monotonic()
            for pending in [p for p in self.pending.values() if p.deadline < now and p.count is not None]:
                log.warning("request_timed_out", request_id=pending.internal_id)
                for message in pending.expire():
                    self.send(message)
                self._finish(pending)

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
        self.send(protocol.status(
            "Ready" if workers else "No transcription workers are running",
            recording=False, processing=bool(self.pending), model=self.model, workers=workers,
        ))  # fmt: skip
