"""The gateway's client for the audio service's HTTP API.

A file is sent again while the audio service cannot be reached or drops the connection
before it answers: that is an audio service restarting (``up`` and Compose bring it back
in seconds), and the client's file must not fail for it. Sending again is safe: the
gateway names the request, the audio service derives every piece's id from that name,
and a piece answered twice is shown once (:class:`gateway.pending.PendingRequest`). An
answer, even an error, is never retried; nor is a read that timed out (the audio service
is alive and busy: a second copy would only add work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared import codec
from shared.errors import ErrorCode, parse_code
from shared.protocol import ProtocolError

log = structlog.get_logger()


@dataclass(frozen=True)
class SubmittedFile:
    request_id: str
    duration_s: float
    pieces: list[dict[str, Any]]


#: Failures that mean "the audio service is not there (any more)", not "it is slow".
RESTART_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class AudioServiceClient:
    def __init__(
        self, base_url: str, *, retry_s: float = 20.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(180.0, connect=5.0), transport=transport
        )
        self.retry_s = retry_s

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit_file(self, audio: bytes, **fields: Any) -> SubmittedFile:
        """Decode, split and enqueue a whole file; raise ProtocolError with the client's code."""
        body = codec.dumps({"audio": audio, **fields})
        try:
            response = await self._post_until_answered(body)
        except httpx.HTTPError as exc:
            raise ProtocolError(
                ErrorCode.AUDIO_SERVICE_UNAVAILABLE,
                f"The audio service is not reachable ({type(exc).__name__}); try again shortly",
            ) from exc
        data = _json(response)
        if response.status_code != 200:
            code = data.get("code")
            message = str(data.get("message") or "The audio service failed")
            raise ProtocolError(parse_code(code if isinstance(code, str) else None), message)
        return SubmittedFile(data["request_id"], float(data["duration_s"]), list(data["pieces"]))

    async def _post_until_answered(self, body: bytes) -> httpx.Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RESTART_ERRORS),
            stop=stop_after_delay(self.retry_s),
            wait=wait_exponential(multiplier=0.25, max=2.0),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.warning("audio_service_retry", attempt=attempt.retry_state.attempt_number)
                return await self._http.post(
                    "/decode", content=body, headers={"content-type": "application/msgpack"}
                )
        raise AssertionError("unreachable: tenacity reraises the last error")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
