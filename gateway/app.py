"""Gateway application factory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from gateway import routes
from gateway.admission import LiveAdmission
from gateway.audio_client import AudioServiceClient
from gateway.auth import APIKeyMiddleware
from gateway.context import GatewayContext
from gateway.deepgram.live import listen_websocket
from gateway.deepgram.prerecorded import listen_prerecorded
from gateway.live_sessions import LiveSessions
from gateway.openai_api import OpenAIAudioAPI
from gateway.openai_errors import http_exception_handler
from gateway.realtime.session import realtime_endpoint
from gateway.replies import ReplyRouter
from gateway.whisperlive.session import whisperlive_endpoint
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
        audio = AudioServiceClient(settings.audio_service_url, retry_s=settings.audio_service_retry_s)
        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        sessions = LiveSessions(settings.resume_window_s, api_key)
        admission = LiveAdmission(client, settings)
        admission.start()
        app.state.ctx = GatewayContext(
            settings=settings,
            redis=client,
            router=router,
            audio=audio,
            sessions=sessions,
            admission=admission,
        )
        try:
            yield
        finally:
            await sessions.aclose()
            await admission.aclose()
            await router.stop()
            await audio.aclose()
            await client.aclose()

    return Starlette(
        routes=[
            Route("/", routes.index),
            WebSocketRoute("/", whisperlive_endpoint),  # WhisperLive's clients open ws://host:port
            Route("/demo", routes.demo),
            Mount("/static", StaticFiles(packages=[("gateway", "static")]), name="static"),
            Route("/health", routes.health),
            Route("/metrics", routes.metrics_endpoint),
            Route("/api/status", routes.api_status),
            Route("/api/models", routes.api_models),
            Route("/api/languages", routes.api_languages),
            Route("/api/load-model", routes.api_load_model, methods=["POST"]),
            WebSocketRoute("/ws", websocket_endpoint),
            WebSocketRoute("/v1/realtime", realtime_endpoint),
            WebSocketRoute("/v1/listen", listen_websocket),  # Deepgram live
            Route("/v1/listen", listen_prerecorded, methods=["POST"]),  # Deepgram pre-recorded
            *OpenAIAudioAPI().routes(),
        ],
        middleware=_auth_middleware(settings),
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=lifespan,
    )


def _auth_middleware(settings: Settings) -> list[Middleware]:
    """The API key check, only when ``S2T_API_KEY`` is set (otherwise the service is open)."""
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    return [Middleware(APIKeyMiddleware, api_key=key)] if key else []


def ws_max_size(settings: Settings) -> int:
    """Largest WebSocket message the server reads: half again the audio limit as base64.

    A message somewhat over the audio limit is read and answered with ``audio_too_large``
    (an honest mistake keeps its connection); one far over it is hostile and is refused
    with close code 1009 before it is buffered whole."""
    return settings.max_audio_bytes * 4 // 3 * 3 // 2 + 64 * 1024
