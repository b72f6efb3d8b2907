"""Any container/codec ffmpeg reads -> 16 kHz mono signed 16-bit PCM, over pipes.

Audio never touches disk: bytes go to ffmpeg's stdin and PCM comes back on stdout (an
MP4 with its index at the end goes as an in-memory file instead, see
:mod:`audio_service.seekable`). ffmpeg runs as a child process so that a hostile file
can at worst crash that child, never the service; output is capped so a tiny file that
expands to hours cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audio_service import seekable
from audio_service.ffmpeg_binary import ffmpeg_path
from shared.audio_format import BYTES_PER_SAMPLE, SAMPLE_RATE


class DecodeError(Exception):
    """The bytes are not audio ffmpeg can read (or hold no samples)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodedAudio:
    pcm: bytes  # int16 little-endian mono at SAMPLE_RATE

    @property
    def samples(self) -> int:
        return len(self.pcm) // BYTES_PER_SAMPLE

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE

    def as_float32(self) -> np.ndarray:
        return np.frombuffer(self.pcm, dtype="<i2").astype(np.float32) / 32768.0


def ffmpeg_pcm_command(
    input_args: Sequence[str] = (), output_args: Sequence[str] = (), source: str = "pipe:0"
) -> list[str]:
    """ffmpeg reading encoded audio (on stdin unless ``source`` says otherwise) and writing
    16 kHz mono s16le on stdout: the one decoding recipe for whole files and live streams."""
    return [
        ffmpeg_path(), "-nostats", "-hide_banner", "-loglevel", "error", "-threads", "1",
        *input_args, "-i", source, "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "-acodec", "pcm_s16le",
        *output_args, "pipe:1",
    ]  # fmt: skip


async def decode(data: bytes, *, max_seconds: float, timeout_s: float = 120.0) -> DecodedAudio:
    """Decode a whole self-contained file with the spare ffmpeg if one waits. The caller
    starts the next spare (:func:`refill_spare`) once its answer is on its way, off the
    request's critical path."""
    if not data:
        raise DecodeError("empty_audio", "The audio is empty")
    max_bytes = int(max_seconds * SAMPLE_RATE) * BYTES_PER_SAMPLE
    with contextlib.ExitStack() as stack:
        if seekable.needs_seeking(data) and seekable.can_hand_over_memory_files():
            fd, path = stack.enter_context(seekable.memory_file(data))
            proc = await _spawn(source=path, pass_fds=(fd,))
        else:
            proc = await _spare.take()
        try:
            pcm, stderr = await asyncio.wait_for(_pump(proc, data, max_bytes), timeout_s)
        except TimeoutError:
            raise DecodeError("invalid_audio", "Decoding took too long; the file may be damaged") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if len(pcm) > max_bytes:
        raise DecodeError("audio_too_long", f"Audio is longer than the limit of {max_seconds:.0f} s")
    if proc.returncode not in (0, -9) and len(pcm) < BYTES_PER_SAMPLE * SAMPLE_RATE // 100:
        raise DecodeError("invalid_audio", _describe_failure(stderr))
    pcm = pcm[: len(pcm) - len(pcm) % BYTES_PER_SAMPLE]
    if not pcm:
        raise DecodeError("empty_audio", "The file holds no audio samples")
    return DecodedAudio(pcm)


async def _spawn(source: str = "pipe:0", pass_fds: tuple[int, ...] = ()) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *ffmpeg_pcm_command(source=source),
        stdin=asyncio.subprocess.PIPE if source == "pipe:0" else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=pass_fds,
    )


class _SpareDecoder:
    """One ffmpeg started ahead of need, waiting on its stdin.

    Starting the ffmpeg binary costs about 12 ms of a short file's decode here; with a
    spare ready, a request pays only for decoding. The next spare starts once a decode
    has finished (:meth:`refill`), not while it runs: an ffmpeg starting beside the
    decoding one made that decode about 15 ms slower. The audio service awaits the
    refill after its answer is sent (a Starlette background task), never in a task of
    its own: cancelling an unfinished spawn when the event loop stops hangs. A spare is
    never replaced (it would wait on its stdin for ever), and one from another event
    loop (tests run several) is not reused.
    """

    def __init__(self) -> None:
        self._next: tuple[asyncio.AbstractEventLoop, asyncio.subprocess.Process] | None = None

    async def take(self) -> asyncio.subprocess.Process:
        spare, self._next = self._next, None
        if spare is not None and spare[0] is asyncio.get_running_loop() and spare[1].returncode is None:
            return spare[1]
        return await _spawn()

    async def refill(self) -> None:
        if self._next is not None:
            return
        proc = await _spawn()
        if self._next is None:
            self._next = (asyncio.get_running_loop(), proc)
        else:  # an overlapping request refilled first
            proc.kill()
            await proc.wait()


_spare = _SpareDecoder()


async def refill_spare() -> None:
    """Start the spare ffmpeg the next file will take, unless one is waiting already."""
    await _spare.refill()


async def _pump(proc: asyncio.subprocess.Process, data: bytes, max_bytes: int) -> tuple[bytes, bytes]:
    """Feed stdin (unless ffmpeg reads a file) while draining stdout and stderr, so that
    no pipe can fill and block."""
    assert proc.stdout and proc.stderr
    stdin, stderr = proc.stdin, proc.stderr

    async def feed() -> None:
        if stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(data)
            await stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()

    async def drain_stdout() -> bytes:
        chunks: list[bytes] = []
        total = 0
        while chunk := await proc.stdout.read(1 << 16):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                proc.kill()
                break
        return b"".join(chunks)

    async def drain_stderr() -> bytes:
        """All of it (one read returns whatever one write of ffmpeg's put there), its
        first 64 KiB kept."""
        kept = b""
        while chunk := await stderr.read(1 << 16):
            kept = (kept + chunk)[: 1 << 16]
        return kept

    feeder = asyncio.create_task(feed())
    pcm, messages = await asyncio.gather(drain_stdout(), drain_stderr())
    await feeder
    return pcm, messages


_LOG_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")


def _describe_failure(stderr: bytes) -> str:
    """A reason a caller can act on; ffmpeg's own last line where none fits."""
    lines = [_LOG_PREFIX.sub("", line).strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    text = " ".join(lines)
    if "matches no streams" in text:
        return "The file has no audio stream"
    if "Invalid data found when processing input" in text:
        return "Could not decode the audio: not an audio or video format ffmpeg knows, or damaged"
    return f"Could not decode the audio ({lines[-1][:200] if lines else 'no audio stream found'})"
