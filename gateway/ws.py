"""The browser WebSocket endpoint ``/ws``."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from starlette.websockets import WebSocket

from gateway.connection import Connection, ProtocolHandler
from gateway.context import GatewayContext
from gateway.origins import origin_allowed
from gateway.session import BrowserProtocol
from shared import protocol
from shared.errors import ErrorCode, close_code

log = structlog.get_logger()

#: "Try again later": the server is at its connection limit.
CLOSE_TRY_AGAIN_LATER = close_code(ErrorCode.TOO_MANY_CLIENTS)
#: A page from a foreign origin (refused before the handshake completes: HTTP 403).
CLOSE_POLICY_VIOLATION = close_code(ErrorCode.ORIGIN_NOT_ALLOWED)


async def websocket_endpoint(websocket: WebSocket) -> None:
    await serve(websocket, BrowserProtocol)


async def serve(websocket: WebSocket, handler: Callable[[Connection], ProtocolHandler]) -> None:
    """Origin check, connection limit and bookkeeping shared by ``/ws`` and ``/v1/realtime``."""
    ctx: GatewayContext = websocket.app.state.ctx
    if not origin_allowed(
        websocket.headers.get("origin"), websocket.headers.get("host"), ctx.settings.origins()
    ):
        log.warning("origin_refused", origin=websocket.headers.get("origin"))
        await websocket.close(CLOSE_POLICY_VIOLATION)  # before accept: HTTP 403 at the handshake
        return
    await websocket.accept()
    if ctx.connections >= ctx.settings.max_clients:
        await websocket.send_json(
            protocol.error(
                protocol.ErrorCode.TOO_MANY_CLIENTS,
                f"The server is at its limit of {ctx.settings.max_clients} connections; try again later",
            )
        )
        await websocket.close(CLOSE_TRY_AGAIN_LATER)
        return
    ctx.connections += 1
    log.info("client_connected", connections=ctx.connections)
    try:
        await Connection(websocket, ctx, handler).run()
    finally:
        ctx.connections -= 1
        log.info("client_disconnected", connections=ctx.connections)
