"""Uploaded files on one reply channel: validate, hand to the audio service, and turn
the workers' replies (any order) into client messages in file order.

Used by the browser WebSocket (one per connection) and by HTTP endpoints (one per
request): whoever owns the reply channel passes replies to :meth:`FileJobs.on_reply`
and receives client messages through ``emit``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from gateway.context import GatewayContext
from gateway.model_loading import validate_request
from gateway.pending import PendingRequest
from shared import protocol
from shared.protocol import ErrorCode, ProtocolError

log = structlog.get_logger()

Emit = Callable[[dict[str, Any]], None]

WATCHDOG_INTERVAL_S = 2.0


class FileJobs:
    def __init__(self, ctx: GatewayContext, reply_channel: str, emit: Emit, *, max_inflight: int = 5) -> None:
        self.ctx = ctx
        self.reply_channel = reply_channel
        self.emit = emit
        self.max_inflight = max_inflight
        self.pending: dict[str, PendingRequest] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def accept(
        self,
        audio: bytes,
        *,
        language: str | None,
        task: str,
        model: str,
        client_request_id: str | None,
        source: str = "upload",
        hints: Mapping[str, Any] | None = None,
    ) -> None:
        """Check what can be checked at once (raising ProtocolError), then decode and queue
        in the background; results arrive through ``emit``. ``hints`` (``prompt``,
        ``temperature``, ``word_timestamps``) travel with every piece to the model."""
        try:
            language = validate_request(model, language, task)
        except ProtocolError as exc:
            exc.request_id = client_request_id
            raise
        if len(self.pending) >= self.max_inflight:
            raise ProtocolError(
                ErrorCode.BUSY,
                f"{self.max_inflight} files are already in flight on this connection; "
                "wait for one to complete",
                request_id=client_request_id,
            )
        pending = PendingRequest(
            internal_id=uuid.uuid4().hex,
            client_request_id=client_request_id,
            deadline=time.monotonic() + self.ctx.settings.job_ttl_s + self.ctx.settings.job_timeout_s,
        )
        self.pending[pending.internal_id] = pending
        task_ = asyncio.create_task(self._submit(pending, audio, language, task, model, source, hints or {}))
        self._tasks.add(task_)
        task_.add_done_callback(self._tasks.discard)

    async def _submit(
        self,
        pending: PendingRequest,
        audio: bytes,
        language: str | None,
        task: str,
        model: str,
        source: str,
        hints: Mapping[str, Any],
    ) -> None:
        # This task's log lines carry the id the audio service and the workers log too.
        structlog.contextvars.bind_contextvars(request_id=pending.internal_id)
        log.info("file_received", bytes=len(audio), model=model, source=source)
        self.emit(protocol.status("Processing audio", processing=True, request_id=pending.client_request_id))
        try:
            submitted = await self.ctx.audio.submit_file(
                audio,
                reply_channel=self.reply_channel,
                request_id=pending.internal_id,
                language=language,
                task=task,
                model=model,
                source=source,
                **hints,
            )
        except ProtocolError as exc:
            self.pending.pop(pending.internal_id, None)
            self.emit(protocol.error(exc.code, exc.message, request_id=pending.client_request_id))
            return
        pending.utterance_ids = [p["utterance_id"] for p in submitted.pieces]
        pending.duration_s = submitted.duration_s
        pending.count = len(submitted.pieces)
        # Decoded and queued: how many pieces to expect, so clients can show progress.
        self.emit(
            protocol.status(
                "Audio queued",
                processing=True,
                pieces=pending.count,
                duration_s=round(submitted.duration_s, 3),
                request_id=pending.client_request_id,
            )
        )
        if not submitted.pieces:  # no speech: say so rather than send silence to the model
            self.emit(pending.no_speech_transcript(source))
        if pending.done:
            self._finish(pending)

    def on_reply(self, reply: dict[str, Any]) -> bool:
        """Take a worker reply if it belongs to one of these files."""
        pending = self.pending.get(str(reply.get("request_id")))
        if pending is None:
            return False
        for message in pending.add(reply):
            self.emit(message)
        if pending.done:
            self._finish(pending)
        return True

    def _finish(self, pending: PendingRequest) -> None:
        if self.pending.pop(pending.internal_id, None) is not None:
            self.emit(pending.completion())

    async def watch_deadlines(self) -> None:
        """Past its deadline, each unanswered piece gets a ``timeout`` error: nothing is
        left pending forever, even if a worker vanished with the job."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            now = time.monotonic()
            for pending in [p for p in self.pending.values() if p.deadline < now and p.count is not None]:
                log.warning("request_timed_out", request_id=pending.internal_id)
                for message in pending.expire():
                    self.emit(message)
                self._finish(pending)

    def fail_inflight(self, code: ErrorCode, message: str) -> None:
        """Answer every queued, unanswered piece with an error now: after a Redis outage
        their jobs or replies may be gone, and a client must not wait for them."""
        for pending in [p for p in self.pending.values() if p.count is not None]:
            for reply in pending.expire(code, message):
                self.emit(reply)
            self._finish(pending)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
