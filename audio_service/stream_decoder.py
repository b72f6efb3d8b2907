"""One ffmpeg process per live stream, fed encoded bytes as they arrive, yielding PCM as
soon as ffmpeg has decoded it.

Probing is cut to the minimum and output is flushed per packet, so a 250 ms chunk in
becomes 250 ms of PCM out within milliseconds instead of after ffmpeg's default
multi-megabyte probe and 32 KB output buffer.
"""

from __future__ import annotations

import asyncio
import contextlib

from audio_service.decoder import ffmpeg_pcm_command
from shared.audio_format import SAMPLE_RATE

#: Client ``format`` -> ffmpeg demuxer, so ffmpeg need not guess from a few bytes.
DEMUXERS = {
    "webm": "matroska",
    "mkv": "matroska",
    "ogg": "ogg",
    "opus": "ogg",
    "mp4": "mp4",
    "m4a": "mp4",
    "wav": "wav",
    "mp3": "mp3",
    "flac": "flac",
    "aac": "aac",
}

READ_SIZE = SAMPLE_RATE * 2 // 10  # 100 ms of PCM


class StreamDecoder:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._stderr = b""
        # Drain stderr all along: a broken stream can make ffmpeg complain per packet,
        # and a full pipe would stall the decoder.
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self._proc.stderr
        while chunk := await self._proc.stderr.read(4096):
            self._stderr = (self._stderr + chunk)[-4096:]

    @classmethod
    async def start(cls, fmt: str | None) -> StreamDecoder:
        demuxer = DEMUXERS.get((fmt or "").lower().split(";")[0].split("/")[-1])
        input_args = ["-fflags", "nobuffer", "-probesize", "4096", "-analyzeduration", "0"]
        if demuxer:
            input_args += ["-f", demuxer]
        proc = await asyncio.create_subprocess_exec(
            *ffmpeg_pcm_command(input_args, ["-flush_packets", "1"]),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def feed(self, data: bytes) -> bool:
        """Write encoded bytes; False when ffmpeg has stopped taking input (bad stream)."""
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            return False
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def end_input(self) -> None:
        if self._proc.stdin and not self._proc.stdin.is_closing():
            self._proc.stdin.close()

    async def read(self) -> bytes:
        """Next PCM bytes (any length, even), or b"" at the end of the stream."""
        assert self._proc.stdout
        return await self._proc.stdout.read(READ_SIZE)

    async def failure(self) -> str | None:
        """After the output ended: ffmpeg's complaint if it failed, else None."""
        code = await self._proc.wait()
        if code == 0:
            return None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stderr_task, 1.0)
        lines = self._stderr.decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:200] if lines else f"ffmpeg exited with code {code}"

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        await self._proc.wait()
        self._stderr_task.cancel()
