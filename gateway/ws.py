"""The browser WebSocket endpoint ``/ws``."""

from __future__ import annotations

import structlog
from starlette.websockets import WebSocket

from gateway.context import GatewayContext
from gateway.session import Session
from shared import protocol

log = structlog.get_logger()

#: "Try again later": the server is at its connection limit.
CLOSE_TRY_AGAIN_LATER = 1013


async def websocket_endpoint(websocket: WebSocket) -> None:
    ctx: GatewayContext = websocket.app.state.ctx
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
        await Session(websocket, ctx).run()
    finally:
        ctx.connections -= 1
        log.info("client_disconnected", connections=ctx.connections)
