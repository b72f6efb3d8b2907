"""Known speakers' reference clips, decoded and checked where all audio is decoded: for a
file's first piece and for a live stream's finals alike, so a bad clip gets the same
``invalid_speaker_reference`` whichever protocol carried it."""

from __future__ import annotations

import asyncio
from typing import Any

from audio_service.decoder import DecodeError, decode
from audio_service.splitter import speech_regions
from shared.audio_format import SAMPLE_RATE
from shared.errors import ErrorCode
from shared.speakers import references


async def decode_references(clips: Any) -> list[bytes]:
    """The clips (encoded audio, any format ffmpeg reads) as int16 PCM, each checked for a
    usable length and enough speech (the speech detector's regions); raises DecodeError
    with ``invalid_speaker_reference`` naming the clip."""
    clips = clips or []
    if not isinstance(clips, list) or not all(isinstance(c, bytes) for c in clips):
        raise DecodeError(ErrorCode.INVALID_SPEAKER_REFERENCE, "speaker_references must be a list of bytes")
    out: list[bytes] = []
    for i, clip in enumerate(clips):
        try:
            decoded = await decode(clip, max_seconds=references.MAX_SECONDS * 3)
        except DecodeError as exc:
            message = f"known_speaker_references[{i}] is not audio that can be decoded ({exc.message})"
            raise DecodeError(ErrorCode.INVALID_SPEAKER_REFERENCE, message) from None
        problem = references.reference_problem(i, decoded.duration_s)
        if problem is None:
            regions = await asyncio.to_thread(speech_regions, decoded.as_float32())
            speech_s = sum(end - start for start, end in regions) / SAMPLE_RATE
            problem = references.reference_problem(i, decoded.duration_s, speech_s)
        if problem:
            raise DecodeError(ErrorCode.INVALID_SPEAKER_REFERENCE, problem)
        out.append(decoded.pcm)
    return out
