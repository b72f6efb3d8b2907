"""The decoder and splitter on real recordings in the formats browsers and users send."""

from __future__ import annotations

import asyncio
import itertools
import subprocess

import pytest

from audio_service.decoder import DecodedAudio, DecodeError, decode, refill_spare
from audio_service.ffmpeg_binary import ffmpeg_path
from audio_service.seekable import needs_seeking
from audio_service.splitter import split
from tests.helpers import ffmpeg_convert, fixture_bytes, manifest, to_plain_mp4

FORMATS = {
    "webm-opus": ("-c:a", "libopus", "-f", "webm"),
    "ogg-opus": ("-c:a", "libopus", "-f", "ogg"),
    "wav": ("-f", "wav"),
    "mp3": ("-c:a", "libmp3lame", "-f", "mp3"),
    "mp4-aac": ("-c:a", "aac", "-movflags", "frag_keyframe+empty_moov", "-f", "mp4"),
    "flac": ("-f", "flac"),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_decodes_to_16k_mono_of_the_right_length(fmt: str) -> None:
    data = ffmpeg_convert(fixture_bytes("jfk"), "-vn", *FORMATS[fmt])
    decoded = await decode(data, max_seconds=600)
    assert abs(decoded.duration_s - manifest()["jfk"]["duration_s"]) < 0.2
    assert decoded.as_float32().std() > 0.01  # real signal, not silence


async def test_decodes_mp4_whose_index_follows_the_samples() -> None:
    """A pipe cannot seek back to the index; such a file used to decode to nothing."""
    data = to_plain_mp4(fixture_bytes("jfk"))
    assert needs_seeking(data)  # the case under test, not a streamable MP4
    decoded = await decode(data, max_seconds=600)
    assert abs(decoded.duration_s - manifest()["jfk"]["duration_s"]) < 0.2
    assert decoded.as_float32().std() > 0.01


def test_only_iso_media_with_a_trailing_index_needs_seeking() -> None:
    jfk = fixture_bytes("jfk")
    streamable = ffmpeg_convert(jfk, "-vn", *FORMATS["mp4-aac"])
    assert not needs_seeking(streamable) and not needs_seeking(jfk)
    assert needs_seeking(b"\x00\x00\x00\x10mdat" + bytes(8))  # old QuickTime: samples first
    assert not needs_seeking(b"\x00\x00\x00\x04ftyp" + bytes(8))  # damaged size: left to ffmpeg
    assert not needs_seeking(b"")


async def test_file_without_audio_stream_says_so() -> None:
    lavfi = [ffmpeg_path(), "-loglevel", "error", "-f", "lavfi", "-i", "color=s=32x32:d=1"]
    video = subprocess.run([*lavfi, "-f", "webm", "pipe:1"], capture_output=True, check=True).stdout
    with pytest.raises(DecodeError) as err:
        await decode(video, max_seconds=600)
    assert err.value.code == "invalid_audio" and "no audio stream" in err.value.message


async def test_rejects_non_audio_and_caps_length() -> None:
    with pytest.raises(DecodeError) as err:
        await decode(b"hello world " * 100, max_seconds=600)
    assert err.value.code == "invalid_audio"
    with pytest.raises(DecodeError) as err:
        await decode(b"", max_seconds=600)
    assert err.value.code == "empty_audio"
    with pytest.raises(DecodeError) as err:
        await decode(fixture_bytes("jfk"), max_seconds=5)
    assert err.value.code == "audio_too_long"


@pytest.mark.slow  # loads the Silero VAD model (in-process, ~0.1 s): models stay out of the fast tier
async def test_long_recording_split_at_pauses_into_pieces_of_at_most_30s() -> None:
    decoded = await decode(fixture_bytes("osr_us_000_0034"), max_seconds=600)
    audio = decoded.as_float32()
    pieces = split(audio, 30.0)
    assert len(pieces) >= 2
    assert all(0 < p.end_s - p.start_s <= 30.0 for p in pieces)
    assert all(a.end <= b.start for a, b in itertools.pairwise(pieces))
    # cuts fall in pauses: the audio right at each cut is quiet compared with speech
    loud = float(abs(audio).max())
    for a, b in itertools.pairwise(pieces):
        around = audio[a.end - 800 : b.start + 800]
        assert float(abs(around).max()) < 0.5 * loud


async def test_overlapping_decodes_leave_one_spare_ffmpeg() -> None:
    """Many files decoded at once must not strand idle ffmpeg processes (each ~40 MB):
    after the burst only the one spare waiting for the next file may remain."""
    psutil = pytest.importorskip("psutil")

    def ffmpeg_children() -> set[int]:
        return {c.pid for c in psutil.Process().children() if "ffmpeg" in c.name()}

    before = ffmpeg_children()  # spares of earlier tests' event loops may still wait
    flac = fixture_bytes("jfk")

    async def one_file() -> DecodedAudio:  # as the audio service does: decode, answer, refill
        decoded = await decode(flac, max_seconds=60)
        await refill_spare()
        return decoded

    results = await asyncio.gather(*(one_file() for _ in range(12)))
    assert all(abs(r.duration_s - 11.0) < 0.1 for r in results)
    await asyncio.sleep(0.5)  # let the last spare start
    assert len(ffmpeg_children() - before) <= 1
