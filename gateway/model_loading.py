"""``load_model`` across the worker pool: broadcast on the control channel, wait until
every live worker has answered, report progress meanwhile."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.context import GatewayContext
from shared import codec, models, protocol
from shared.heartbeats import live_workers
from shared.protocol import ErrorCode, ProtocolError
from shared.redis_keys import CONTROL_CHANNEL, new_reply_channel

Progress = Callable[[dict[str, Any]], Awaitable[None]]


def validate_model_name(name: str) -> models.ModelSpec:
    try:
        return models.lookup(name)
    except models.UnknownModelError as exc:
        raise ProtocolError(ErrorCode.UNKNOWN_MODEL, str(exc)) from None


def validate_request(model: str, language: str | None, task: str) -> str | None:
    """Check a transcription request before any audio is taken; return the language to use
    (None: detect). Files and live recordings both go through here, so a model that cannot
    do what was asked is refused the same way on either path."""
    spec = validate_model_name(model)
    language = protocol.normalize_language(language)
    try:
        models.check_request(model, spec.multilingual, language, task, spec.languages)
    except models.UnsupportedRequestError as exc:
        raise ProtocolError(ErrorCode(exc.code), str(exc)) from None
    return language


async def load_across_pool(
    ctx: GatewayContext, name: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Return a ``model_loaded`` message, or raise ProtocolError (unknown, failed, timeout)."""
    validate_model_name(name)
    workers = await live_workers(ctx.redis)
    if not workers:
        raise ProtocolError(ErrorCode.NO_WORKERS, "No transcription worker is running")
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    channel = new_reply_channel()
    await ctx.router.register(channel, replies.put_nowait)
    started = time.monotonic()
    try:
        await ctx.redis.publish(
            CONTROL_CHANNEL,
            codec.dumps(
                {
                    "command": "load_model",
                    "model": name,
                    "reply_channel": channel,
                    "request_id": uuid.uuid4().hex,
                }
            ),
        )
        if progress:
            await progress(
                protocol.status(
                    f"Loading model {name} on {len(workers)} worker(s)",
                    loading=True,
                    model=name,
                    progress=0.0,
                )
            )
        load_times: dict[str, float] = {}
        deadline = started + ctx.settings.model_load_timeout_s
        while len(load_times) < len(workers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            reply = await asyncio.wait_for(replies.get(), remaining)
            if reply.get("type") == "error":
                raise ProtocolError(ErrorCode.MODEL_UNAVAILABLE, str(reply.get("message")))
            load_times[str(reply.get("worker_id"))] = float(reply.get("load_time", 0.0))
            if progress:
                await progress(
                    protocol.status(
                        f"Model {name} ready on {len(load_times)}/{len(workers)} worker(s)",
                        loading=len(load_times) < len(workers),
                        model=name,
                        progress=round(len(load_times) / len(workers), 3),
                    )
                )
    except TimeoutError:
        raise ProtocolError(
            ErrorCode.TIMEOUT,
            f"Loading model {name} took longer than {ctx.settings.model_load_timeout_s:.0f} s",
        ) from None
    finally:
        await ctx.router.unregister(channel)
    return protocol.model_loaded(name, time.monotonic() - started, workers=len(load_times))
