"""What makes a known speaker's reference clip usable, in one place: the audio service
checks decoded clips against it and the gateway's form check quotes the same limits."""

from __future__ import annotations

#: One embedding partial of the voice encoder is 1.6 s of frames; 1.2 s of audio is the
#: least that still fills most of one. OpenAI documents clips of 2 to 10 s.
MIN_SECONDS = 1.2
MAX_SECONDS = 10.0
#: OpenAI's documented limit on known speakers per request.
MAX_KNOWN = 4
#: Speech the speech detector must find in a clip: a clip of silence, music or noise of
#: the right length would otherwise become a "voice" that quiet passages are matched to.
MIN_SPEECH_SECONDS = 0.8


def reference_problem(index: int, seconds: float, speech_seconds: float | None = None) -> str | None:
    """Why clip ``index`` (decoded, ``seconds`` long, ``speech_seconds`` of it speech when
    known) cannot name a voice; None if it can."""
    if seconds < MIN_SECONDS or seconds > MAX_SECONDS:
        return (
            f"known_speaker_references[{index}] is {seconds:.1f} s of audio; "
            f"clips must be {MIN_SECONDS:g} to {MAX_SECONDS:g} s"
        )
    if speech_seconds is not None and speech_seconds < MIN_SPEECH_SECONDS:
        return (
            f"known_speaker_references[{index}] holds {speech_seconds:.1f} s of speech; "
            f"a clip must hold at least {MIN_SPEECH_SECONDS:g} s of the speaker's voice"
        )
    return None
