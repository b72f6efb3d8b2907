"""What ``whisper-appliance up`` tells the gateway about its children: restarts so far.

The supervisor refreshes one expiring Redis key (no state on disk); the gateway's
``/health`` reads it. ``up`` hands its children ``S2T_SUPERVISOR_ID`` so that several
``up`` on one Redis do not read each other's counts. A gateway started without ``up``
has no id and reports ``"supervisor": null``; so does one whose supervisor stopped
refreshing (the key expires after :data:`SUPERVISOR_TTL_S`).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError

from shared.redis_keys import PREFIX

SUPERVISOR_KEY_PREFIX = f"{PREFIX}:supervisor:"
#: The supervisor refreshes well within this (every couple of seconds and on each change).
SUPERVISOR_TTL_S = 15


class LastRestart(BaseModel):
    child: str
    exit_code: int | None  # negative: killed by that signal
    at: float  # Unix time of the exit


class SupervisorStatus(BaseModel):
    id: str
    pid: int
    started_at: float
    restarts: dict[str, int]  # every child of ``up`` by name (worker-0, gateway, …), 0 included
    last_restart: LastRestart | None = None


def supervisor_key(supervisor_id: str) -> str:
    return f"{SUPERVISOR_KEY_PREFIX}{supervisor_id}"


def publish(client: redis.Redis, status: SupervisorStatus) -> None:
    client.set(supervisor_key(status.id), status.model_dump_json(), ex=SUPERVISOR_TTL_S)


def remove(client: redis.Redis, supervisor_id: str) -> None:
    client.delete(supervisor_key(supervisor_id))


async def read(client: aioredis.Redis, supervisor_id: str | None) -> dict[str, Any] | None:
    """The status as ``/health`` shows it, or None (no supervisor, expired or malformed key)."""
    if not supervisor_id:
        return None
    raw = await client.get(supervisor_key(supervisor_id))
    if raw is None:
        return None
    try:
        return SupervisorStatus.model_validate_json(raw).model_dump()
    except ValidationError:  # a malformed key must not break /health
        return None
