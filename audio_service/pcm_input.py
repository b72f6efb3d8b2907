"""Raw audio input for live streams that is already PCM (or G.711): no ffmpeg process.

OpenAI Realtime clients send 24 kHz 16-bit little-endian PCM (``audio/pcm``) or 8 kHz
G.711 (``audio/pcmu``, ``audio/pcma``). Spawning ffmpeg per session to "decode" PCM
would add a process, pipes and buffering latency for nothing: here the bytes become
16 kHz int16 samples in-process. Resampling uses PyAV's ``AudioResampler`` (libswresample,
already installed with faster-whisper); it keeps its filter state between calls, so chunk
boundaries are seamless. G.711 is expanded with the standard 256-entry tables.

:class:`PcmDecoder` has the same surface as :class:`audio_service.stream_decoder.StreamDecoder`
(``feed``/``end_input``/``read``/``failure``/``kill``), plus :meth:`PcmDecoder.control`:
a marker (commit, clear, new settings) queued behind the audio fed so far, so the stream
applies it exactly at that point of the audio.
"""

from __future__ import annotations

import asyncio

import av
import numpy as np

# The internal stream ``format`` names (the gateway maps OpenAI's names onto these).
from shared.audio_format import (
    G711_ALAW,
    G711_ULAW,
    PCM16_24K,
    RAW_FORMATS,
    SAMPLE_RATE,
    is_raw_format,
    parse_raw_format,
)
from shared.stream_protocol import Clear, Commit, Configure

__all__ = ["G711_ALAW", "G711_ULAW", "PCM16_24K", "RAW_FORMATS", "PcmDecoder", "RawToPcm", "StreamControl"]

#: A gateway instruction that takes effect at its place in the audio.
StreamControl = Commit | Clear | Configure


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


G711_TABLES = {G711_ULAW: _ulaw_table(), G711_ALAW: _alaw_table()}


class RawToPcm:
    """Bytes of one raw format in, 16 kHz int16 mono samples out, carrying state across
    chunks (a partial trailing sample frame, the resampler's filter). Any rate and channel
    count :func:`shared.audio_format.parse_raw_format` accepts; channels are mixed down."""

    def __init__(self, fmt: str) -> None:
        spec = parse_raw_format(fmt)
        if spec is None:
            raise ValueError(f"unknown raw format {fmt!r}")
        self.format = fmt
        self.spec = spec
        self._frame_bytes = spec.frame_bytes
        self._leftover = b""
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

    def convert(self, data: bytes) -> np.ndarray:
        data = self._leftover + data
        cut = len(data) - len(data) % self._frame_bytes
        self._leftover = data[cut:]
        samples = self._samples(data[:cut])
        if samples.size == 0:
            return np.zeros(0, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.spec.rate
        return self._collect(self._resampler.resample(frame))

    def _samples(self, data: bytes) -> np.ndarray:
        """Whole sample frames as int16 mono at the input rate."""
        sample = self.spec.sample
        if sample == "pcm16":
            samples = np.frombuffer(data, dtype="<i2")
        elif sample == "f32":
            floats = np.nan_to_num(np.frombuffer(data, dtype="<f4"), nan=0.0, posinf=1.0, neginf=-1.0)
            samples = (np.clip(floats, -1.0, 1.0) * 32767.0).astype(np.int16)
        else:
            samples = G711_TABLES[sample][np.frombuffer(data, dtype=np.uint8)]
        if self.spec.channels > 1:
            samples = samples.reshape(-1, self.spec.channels).mean(axis=1).astype(np.int16)
        return samples

    def finish(self) -> np.ndarray:
        """The samples still inside the resampler's filter (a few ms) at the end of input."""
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[av.AudioFrame]) -> np.ndarray:
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16, copy=False)


class PcmDecoder:
    """A live stream's decoder for raw formats: converts on ``feed`` and queues the PCM
    (and controls) for the stream's pump, in order."""

    def __init__(self, fmt: str) -> None:
        self._converter = RawToPcm(fmt)
        self._queue: asyncio.Queue[bytes | StreamControl] = asyncio.Queue()
        self._ended = False

    @classmethod
    async def start(cls, fmt: str) -> PcmDecoder:
        return cls(fmt)

    async def feed(self, data: bytes) -> bool:
        if self._ended:
            return False
        self._put(self._converter.convert(data))
        return True

    def _put(self, pcm: np.ndarray) -> None:
        if pcm.size:
            self._queue.put_nowait(pcm.astype("<i2").tobytes())

    def control(self, control: StreamControl) -> None:
        """Queue a control behind the audio fed so far; a new format takes effect for the
        bytes fed after it (the old format's filter tail is flushed first)."""
        if isinstance(control, Configure) and "format" in control.model_fields_set:
            fmt = control.format
            if is_raw_format(fmt) and fmt is not None and fmt != self._converter.format:
                self._put(self._converter.finish())
                self._converter = RawToPcm(fmt)
        self._queue.put_nowait(control)

    def end_input(self) -> None:
        if not self._ended:
            self._ended = True
            self._put(self._converter.finish())
            self._queue.put_nowait(b"")

    async def read(self) -> bytes | StreamControl:
        """Next PCM bytes or control, or b"" at the end of the stream."""
        return await self._queue.get()

    async def failure(self) -> str | None:
        return None  # raw samples cannot fail to decode

    async def kill(self) -> None:
        self._ended = True
