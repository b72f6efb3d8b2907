"""One Redis pub/sub connection per gateway process, fanned out to connections.

Each WebSocket connection has its own unguessable reply channel; workers publish there
and this router hands each message to the handler registered for that channel.

When Redis goes away (restart, network) the router tells its state listeners
``reconnecting``, reconnects with capped exponential backoff, subscribes every registered
channel again on a fresh pub/sub connection and tells them ``reconnected``. Messages
published while it was away are lost (pub/sub keeps nothing); workers retry such replies
and the audio service queues lost jobs again (README, "Redis restarts"), so connections
keep waiting for their work in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import structlog

from shared import codec
from shared.redis_keys import PREFIX

log = structlog.get_logger()

Handler = Callable[[dict[str, Any]], None]
#: Called with ``"reconnecting"`` when the pub/sub connection is lost, ``"reconnected"`` after.
StateListener = Callable[[str], None]

RECONNECT_FIRST_DELAY_S = 0.25
RECONNECT_MAX_DELAY_S = 5.0


class ReplyRouter:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._handlers: dict[str, Handler] = {}
        self._listeners: set[StateListener] = set()
        self._task: asyncio.Task[None] | None = None
        # A standing subscription keeps the reader valid while no client is connected.
        self._standing = f"{PREFIX}:gateway:{uuid.uuid4().hex}"
        self.connected = True

    async def start(self) -> None:
        await self._pubsub.subscribe(self._standing)
        self._task = asyncio.create_task(self._read_forever(), name="reply-router")

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: StateListener) -> None:
        self._listeners.discard(listener)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()

    async def register(self, channel: str, handler: Handler) -> None:
        self._handlers[channel] = handler
        try:
            await self._pubsub.subscribe(channel)
        except Exception as exc:  # Redis is away: the reconnect subscribes every registered channel
            log.warning("reply_subscribe_failed", error=str(exc))

    async def unregister(self, channel: str) -> None:
        self._handlers.pop(channel, None)
        with contextlib.suppress(Exception):
            await self._pubsub.unsubscribe(channel)

    async def _read_forever(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reply_router_error", error=str(exc))
                await self._reconnect()
                continue
            if not message or message.get("type") != "message":
                continue
            channel = (
                message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            )
            handler = self._handlers.get(channel)
            if handler is None:
                continue  # the connection has gone; its late results are discarded
            try:
                handler(codec.loads(message["data"]))
            except Exception:
                log.exception("reply_handler_failed")

    def _notify(self, state: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("reply_listener_failed")

    async def _reconnect(self) -> None:
        """Replace the broken pub/sub connection, retrying with capped exponential backoff,
        and subscribe the standing channel and every registered one on the new connection."""
        self.connected = False
        self._notify("reconnecting")
        delay = RECONNECT_FIRST_DELAY_S
        while True:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            # Swapped in before subscribing, so a register() meanwhile lands on the new one.
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await self._pubsub.subscribe(self._standing, *self._handlers)
                break
            except Exception as exc:
                log.info("reply_router_reconnect_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY_S)
        self.connected = True
        log.warning("reply_router_reconnected", channels=len(self._handlers))
        self._notify("reconnected")
