"""The gateway's client for the audio service's HTTP API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from shared import codec
from shared.errors import ErrorCode, parse_code
from shared.protocol import ProtocolError


@dataclass(frozen=True)
class SubmittedFile:
    request_id: str
    duration_s: float
    pieces: list[dict[str, Any]]


class AudioServiceClient:
    def __init__(self, base_url: str) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(180.0, connect=5.0))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit_file(self, audio: bytes, **fields: Any) -> SubmittedFile:
        """Decode, split and enqueue a whole file; raise ProtocolError with the client's code."""
        body = codec.dumps({"audio": audio, **fields})
        try:
            response = await self._http.post(
                "/decode", content=body, headers={"content-type": "application/msgpack"}
            )
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


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
