"""Which web pages may open a WebSocket to this gateway (cross-site WebSocket hijacking).

Browsers send ``Origin`` on every WebSocket handshake and do not apply CORS to it, so a
page on any site could otherwise talk to a gateway on the visitor's network. Allowed:
the gateway's own origin (the ``Host`` the browser used; the demo page is served from
there), the origins listed in ``S2T_ALLOWED_ORIGINS`` (comma-separated,
``scheme://host[:port]``), and, only while that list is empty, pages on
localhost/127.0.0.1/[::1] at any port. A handshake without ``Origin`` comes from a
program, not a browser page, and is allowed (the API key, when set, still applies).
There is no wildcard: ``*`` in the list matches nothing.
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _normalize(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    if origin is None:
        return True
    origin = _normalize(origin)
    try:
        parts = urlsplit(origin)
        hostname = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not hostname:
        return False  # "null" (sandboxed frames, file://) and other schemes
    if host and parts.netloc == host.strip().lower():
        return True
    listed = {_normalize(o) for o in allowed}
    if listed:
        return origin in listed
    return hostname in LOCAL_HOSTS
