"""Uploaded files on one reply channel: validate, hand to the audio service, and turn
the workers' replies (any order) into client messages in file order.

Used by every WebSocket connection (one per connection) and by HTTP endpoints (one per
request): whoever owns the reply channel passes replies to :meth:`FileJobs.on_reply`
and receives typed :mod:`gateway.events` through ``emit``, to render in its protocol.

A file whose speakers are to be labelled (``speakers`` given) is held back until all its
pieces are in: the labels come from clustering every piece's voice windows together
(:mod:`gateway.speaker_labels`), so its pieces are released labelled, then its done event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway import events
from gateway.context import GatewayContext
from gateway.model_loading import validate_request
from gateway.pending import PendingRequest
from gateway.speaker_labels import SpeakerHints, file_turns, label_pieces
from gateway.worker_reply import WorkerReply
from shared.protocol import ErrorCode, ProtocolError

log = structlog.get_logger()

Emit = Callable[[events.FileEvent], None]

WATCHDOG_INTERVAL_S = 2.0


@dataclass
class _Held:
    """A diarized file's released events, kept until all its pieces are in."""

    hints: SpeakerHints
    events: list[events.PieceDone | events.PieceFailed] = field(default_factory=list)


class FileJobs:
    def __init__(self, ctx: GatewayContext, reply_channel: str, emit: Emit, *, max_inflight: int = 5) -> None:
        self.ctx = ctx
        self.reply_channel = reply_channel
        self.emit = emit
        self.max_inflight = max_inflight
        self.pending: dict[str, PendingRequest] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, _Held] = {}  # diarized files' pieces until the file is done

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
        speakers: SpeakerHints | None = None,
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
            source=source,
        )
        self.pending[pending.internal_id] = pending
        if speakers is not None:
            self._held[pending.internal_id] = _Held(speakers)
            # Decoded as the same file unlabelled is; the worker aligns the words for the cut
            # at each change of voice (``whisper_service.jobs._with_words``).
            hints = {**(hints or {}), "diarize": True}
        self._spawn(self._submit(pending, audio, language, task, model, source, hints or {}))

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
        self.emit(events.FileReceived(pending.client_request_id))
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
            self._held.pop(pending.internal_id, None)
            self.emit(events.FileRefused(pending.client_request_id, str(exc.code), exc.message))
            return
        pieces = [str(p["utterance_id"]) for p in submitted.pieces]
        self._emit_all(pending, pending.queued(pieces, submitted.duration_s))

    def on_reply(self, reply: dict[str, Any]) -> bool:
        """Take a worker reply if it belongs to one of these files."""
        pending = self.pending.get(str(reply.get("request_id")))
        if pending is None:
            return False
        self._emit_all(pending, pending.add(WorkerReply.parse(reply)))
        return True

    def _emit_all(self, pending: PendingRequest, out: list[events.FileEvent]) -> None:
        held = self._held.get(pending.internal_id)
        for event in out:
            if held is not None and isinstance(event, events.PieceDone | events.PieceFailed):
                held.events.append(event)
                continue
            if isinstance(event, events.FileDone) and self.pending.pop(pending.internal_id, None) is None:
                continue  # already finished
            if held is not None and isinstance(event, events.FileDone):
                del self._held[pending.internal_id]
                self._spawn(self._release_labelled(held, event))
                continue
            self.emit(event)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task_ = asyncio.create_task(coro)
        self._tasks.add(task_)
        task_.add_done_callback(self._tasks.discard)

    async def _release_labelled(self, held: _Held, done: events.FileDone) -> None:
        """All pieces of a diarized file are in: label them together, then release them in
        order and the done event. A failed piece leaves the others unlabelled (their
        errors say why the file is incomplete)."""
        out: list[events.FileEvent] = list(held.events)
        if not any(isinstance(e, events.PieceFailed) for e in held.events):
            pieces = [e for e in held.events if isinstance(e, events.PieceDone)]
            try:
                turns = await asyncio.to_thread(file_turns, [p.speakers for p in pieces], held.hints)
            except ValueError as exc:
                log.error("speaker_labels_failed", error=str(exc)[:200])
                message = f"Speaker labels failed: {exc}"
                out = [events.PieceFailed(done.request_id, 0, None, "internal_error", message)]
            else:
                labelled = label_pieces([p.message for p in pieces], turns)
                out = [
                    events.PieceDone(p.request_id, p.index, message, p.speakers)
                    for p, message in zip(pieces, labelled, strict=True)
                ]
        for event in [*out, done]:
            self.emit(event)

    async def watch_deadlines(self) -> None:
        """Past its deadline, each unanswered piece gets a ``timeout`` error: nothing is
        left pending forever, even if a worker vanished with the job."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            now = time.monotonic()
            for pending in [p for p in self.pending.values() if p.deadline < now and p.count is not None]:
                log.warning("request_timed_out", request_id=pending.internal_id)
                self._emit_all(pending, pending.expire())

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
