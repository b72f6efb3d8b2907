"""Gateway application factory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from gateway import routes
from gateway.audio_client import AudioServiceClient
from gateway.context import GatewayContext
from gateway.replies import ReplyRouter
from gateway.ws import websocket_endpoint
from shared.config import Settings, get_settings
from shared.redis_keys import async_client


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = async_client(settings)
        router = ReplyRouter(client)
        await router.start()
        audio = AudioServiceClient(settings.audio_service_url)
        app.state.ctx = GatewayContext(settings=settings, redis=client, router=router, audio=audio)
        try:
            yield
        finally:
            await router.stop()
            await audio.aclose()
            await client.aclose()

    return Starlette(
        routes=[
            Route("/", routes.index),
            Route("/health", routes.health),
            Route("/api/status", routes.api_status),
            Route("/api/models", routes.api_models),
            Route("/api/languages", routes.api_languages),
            Route("/api/load-model", routes.api_load_model, methods=["POST"]),
            WebSocketRoute("/ws", websocket_endpoint),
        ],
        lifespan=lifespan,
    )


def ws_max_size(settings: Settings) -> int:
    """Largest WebSocket message the server reads: half again the audio limit as base64.

    A message somewhat over the audio limit is read and answered with ``audio_too_large``
    (an honest mistake keeps its connection); one far over it is hostile and is refused
    with close code 1009 before it is buffered whole."""
    return settings.max_audio_bytes * 4 // 3 * 3 // 2 + 64 * 1024
