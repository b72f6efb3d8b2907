"""What the gateway process shares between connections and routes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from gateway.admission import LiveAdmission
from gateway.audio_client import AudioServiceClient
from gateway.live_sessions import LiveSessions
from gateway.replies import ReplyRouter
from shared.config import Settings


@dataclass
class GatewayContext:
    settings: Settings
    redis: aioredis.Redis
    router: ReplyRouter
    audio: AudioServiceClient
    sessions: LiveSessions
    admission: LiveAdmission
    started_at: float = field(default_factory=time.time)
    connections: int = 0
