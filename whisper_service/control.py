"""Pool-wide commands: every worker subscribes to one control channel.

A ``load_model`` published there reaches all workers at once; each loads the model
into its cache and answers on the requester's reply channel, so the requester can
tell when the whole pool has it.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from shared import codec, protocol
from shared.models import ModelUnavailableError, UnknownModelError
from shared.redis_keys import CONTROL_CHANNEL
from whisper_service.context import WorkerContext

log = structlog.get_logger()


def handle(ctx: WorkerContext, message: dict[str, Any]) -> None:
    if message.get("command") != "load_model":
        return
    name = str(message.get("model", ""))
    reply_channel = message.get("reply_channel")
    try:
        transcriber, took = ctx.models.get(name)
        reply = protocol.model_loaded(name, took, backend=transcriber.backend)
    except (UnknownModelError, ModelUnavailableError) as exc:
        reply = protocol.error(protocol.ErrorCode.MODEL_UNAVAILABLE, str(exc))
    except Exception as exc:
        log.exception("model_load_failed", model=name)
        reply = protocol.error(protocol.ErrorCode.MODEL_UNAVAILABLE, f"Loading '{name}' failed ({exc})")
    ctx.announce()
    if isinstance(reply_channel, str):
        ctx.publish(
            reply_channel,
            {**reply, "worker_id": ctx.info.id, "kind": "control", "request_id": message.get("request_id")},
        )


def listen_forever(ctx: WorkerContext, stop: threading.Event) -> None:
    pubsub = ctx.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CONTROL_CHANNEL)
    while not stop.is_set():
        try:
            message = pubsub.get_message(timeout=1.0)
            if message and message["type"] == "message":
                handle(ctx, codec.loads(message["data"]))
        except Exception:
            log.exception("control_channel_error")
            stop.wait(1.0)
