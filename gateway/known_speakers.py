"""Known speakers as a client names them: ``known_speaker_names`` with one
``known_speaker_references`` clip each (data URLs of audio), checked once for every
protocol that takes them (OpenAI's file form, ``/ws`` ``start_real_recording``, the
Realtime session). Each protocol turns :class:`KnownSpeakerError` into its own error
shape; what the clips hold (length, speech) is the audio service's check
(``invalid_speaker_reference``), since it decodes them like any audio.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from shared.speakers import references

MAX_KNOWN_SPEAKERS = references.MAX_KNOWN
#: 10 s of 48 kHz 16-bit stereo WAV is 1.9 MB: a clip over this is not a short sample.
MAX_REFERENCE_BYTES = 2 * 1024 * 1024
_DATA_URL = re.compile(r"^data:(audio/[\w.+-]+);base64,(.*)$", re.DOTALL)


class KnownSpeakerError(ValueError):
    """A bad known-speaker field: ``param`` names it (``known_speaker_names`` or
    ``known_speaker_references``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def parse_known_speakers(names: Sequence[str], clips: Sequence[str]) -> list[tuple[str, bytes]]:
    """Each name with its reference clip's bytes, in the order given."""
    if len(clips) > len(names):
        raise KnownSpeakerError(
            "More known_speaker_references[] than known_speaker_names[]", "known_speaker_references"
        )
    if len(names) != len(clips):
        raise KnownSpeakerError(
            "Each known_speaker_names[] entry needs a known_speaker_references[] clip", "known_speaker_names"
        )
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise KnownSpeakerError(f"At most {MAX_KNOWN_SPEAKERS} known speakers", "known_speaker_names")
    if any(not isinstance(n, str) or not n.strip() or len(n) > 64 for n in names) or len(set(names)) != len(
        names
    ):
        raise KnownSpeakerError(
            "known_speaker_names[] must be distinct, non-empty names of at most 64 characters",
            "known_speaker_names",
        )
    out: list[bytes] = []
    for i, ref in enumerate(clips):
        m = _DATA_URL.match(ref.strip()) if isinstance(ref, str) else None
        if not m:
            raise KnownSpeakerError(
                f"known_speaker_references[{i}] is not an audio data URL (data:audio/...;base64,...)",
                "known_speaker_references",
            )
        try:
            clip = base64.b64decode(m.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise KnownSpeakerError(
                f"known_speaker_references[{i}] is not valid base64", "known_speaker_references"
            ) from None
        if not clip or len(clip) > MAX_REFERENCE_BYTES:
            raise KnownSpeakerError(
                f"known_speaker_references[{i}] must be 1 byte to 2 MB of audio", "known_speaker_references"
            )
        out.append(clip)
    return list(zip(names, out, strict=True))
