"""API key check for ``/v1/*``, ``/api/*`` and ``/ws`` when ``S2T_API_KEY`` is set.

HTTP clients send ``Authorization: Bearer <key>`` (what OpenAI's SDK sends) or ``Token
<key>`` (what Deepgram's SDKs send), and may on WebSockets too. Browsers cannot set
headers on a WebSocket, so WebSockets also take ``?api_key=<key>`` or an entry in
``Sec-WebSocket-Protocol`` (``new WebSocket(url, ["whisper-appliance", "bearer.<key>"])``);
the handshake then answers with the first non-secret subprotocol offered, as browsers
require an answer when they offered one. Keys are compared with
:func:`hmac.compare_digest`, so timing does not reveal how much of a guess was right.
``/``, ``/health`` and ``/metrics`` stay open for pages and probes; ``/`` as a WebSocket
(WhisperLive's protocol) is protected like ``/ws``.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware) so streamed responses and
WebSockets pass through untouched.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.openai_errors import OpenAIError
from shared.errors import ErrorCode, close_code

PROTECTED_PREFIXES = ("/v1/", "/api/")
PROTECTED_PATHS = ("/v1", "/api", "/ws")
#: ``Authorization`` schemes that carry the key: OpenAI's SDK sends ``Bearer``, Deepgram's ``Token``.
TOKEN_SCHEMES = ("bearer", "token")
#: WebSocket-only paths: ``/`` is the landing page on HTTP and WhisperLive's protocol on WebSockets.
PROTECTED_WEBSOCKET_PATHS = ("/",)
#: Subprotocol entries that carry the key: ``bearer.<key>`` or the bare key.
SUBPROTOCOL_PREFIX = "bearer."
#: Close code for a refused WebSocket handshake (policy violation; the server answers 403).
CLOSE_POLICY_VIOLATION = close_code(ErrorCode.INVALID_API_KEY)


def protected(path: str, kind: str = "http") -> bool:
    if kind == "websocket" and path in PROTECTED_WEBSOCKET_PATHS:
        return True
    return path in PROTECTED_PATHS or path.startswith(PROTECTED_PREFIXES)


def key_matches(candidate: str | None, key: str) -> bool:
    if not candidate:
        return False
    return hmac.compare_digest(candidate.encode(), key.encode())


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() in TOKEN_SCHEMES else None
    return None


def subprotocols(scope: Scope) -> list[str]:
    return [str(p) for p in scope.get("subprotocols") or []]


def key_subprotocol(offered: list[str], key: str) -> str | None:
    """The offered subprotocol entry that carries the key, if any."""
    for entry in offered:
        secret = entry.removeprefix(SUBPROTOCOL_PREFIX)
        if key_matches(secret, key):
            return entry
    return None


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not protected(scope["path"], scope["type"]):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            if key_matches(bearer_token(scope["headers"]), self.key):
                await self.app(scope, receive, send)
                return
            error = OpenAIError.from_code(
                ErrorCode.INVALID_API_KEY, "Invalid or missing API key: send 'Authorization: Bearer <key>'"
            )
            response = error.response()
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        await self._websocket(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        offered = subprotocols(scope)
        carrier = key_subprotocol(offered, self.key)
        allowed = key_matches((query.get("api_key") or [None])[0], self.key) or key_matches(
            bearer_token(scope["headers"]), self.key
        )  # programs (e.g. OpenAI's realtime client) send the header on WebSockets too
        if carrier is None and not allowed:
            await receive()  # the websocket.connect message
            await send(
                {
                    "type": "websocket.close",
                    "code": CLOSE_POLICY_VIOLATION,
                    "reason": "Invalid or missing API key",
                }
            )
            return
        if carrier is None:
            await self.app(scope, receive, send)
            return
        # Answer with a subprotocol the browser offered, never echoing the key when
        # another entry (e.g. "whisper-appliance") was offered alongside it.
        answer = next((p for p in offered if p != carrier), carrier)

        async def send_with_subprotocol(message: Message) -> None:
            if message["type"] == "websocket.accept" and not message.get("subprotocol"):
                message = {**message, "subprotocol": answer}
            await send(message)

        await self.app(scope, receive, send_with_subprotocol)
