"""One Redis pub/sub connection per gateway process, fanned out to connections.

Each WebSocket connection has its own unguessable reply channel; workers publish there
and this router hands each message to the handler registered for that channel.
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


class ReplyRouter:
    def __init__(self, client: aioredis.Redis) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._handlers: dict[str, Handler] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A standing subscription keeps the reader valid while no client is connected.
        await self._pubsub.subscribe(f"{PREFIX}:gateway:{uuid.uuid4().hex}")
        self._task = asyncio.create_task(self._read_forever(), name="reply-router")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()

    async def register(self, channel: str, handler: Handler) -> None:
        self._handlers[channel] = handler
        await self._pubsub.subscribe(channel)

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
                await asyncio.sleep(0.5)
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
