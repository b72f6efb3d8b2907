"""What crosses the Redis queue and the reply channels between services.

A :class:`TranscriptionJob` is one piece of audio for one worker. Its reply is a
protocol message (``transcript`` or ``error``, built with :mod:`shared.protocol`)
plus the routing fields in :data:`ROUTING_FIELDS`, which the gateway strips before a
client sees it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from shared.audio_format import pcm_seconds
from shared.speakers.wire import REPLY_FIELD

#: RQ resolves the job function by this dotted path, so the audio service never
#: imports the model code.
TRANSCRIBE_FUNC = "whisper_service.jobs.transcribe"

#: Fields added to replies for the gateway's bookkeeping; never sent to clients
#: (``worker_id`` is kept: it tells a client which replica of the pool answered).
ROUTING_FIELDS = ("request_id", "index", "count", "kind", "seq", "enqueued_at")
#: Fields of a reply for the gateway only: a piece's speaker windows and embeddings (bytes,
#: which a JSON client could not even receive), read by the file's assembler.
INTERNAL_FIELDS = (*ROUTING_FIELDS, REPLY_FIELD)


def live_utterance_id(stream_id: str, index: int) -> str:
    """The id of a live stream's ``index``-th utterance (all its partials and its final)."""
    return f"{stream_id}-u{index}"


def client_view(reply: dict[str, Any]) -> dict[str, Any]:
    """A worker reply as a client may see it: the routing and speaker fields removed."""
    return {k: v for k, v in reply.items() if k not in INTERNAL_FIELDS}


#: ``candidate``: a live utterance's probable final, sent while its pause is being confirmed.
JobKind = Literal["final", "partial", "candidate"]


@dataclass
class TranscriptionJob:
    utterance_id: str
    reply_channel: str
    pcm: bytes  # shared.audio_format: int16 little-endian mono 16 kHz
    model: str
    language: str | None = None
    task: str = "transcribe"
    source: str = "upload"
    kind: JobKind = "final"
    request_id: str | None = None
    index: int = 0
    count: int = 1
    offset_s: float = 0.0  # where this piece starts in the stream or file
    prompt: str | None = None
    stream_id: str | None = None  # live streams: partials of a stream supersede older ones
    seq: int = 0  # order of this job among its stream's jobs
    temperature: float | None = None  # None or 0: S2T_TEMPERATURE_FALLBACK decides; >0: as asked
    word_timestamps: bool = False  # add per-word timings to the reply's segments
    trim_segments: bool = False  # snap segment times to the speech (subtitles)
    #: Whether the reply needs segment times (False: the worker may decode without timestamp
    #: tokens, S2T_FILE_TIMESTAMPS); None: not said, decoded with them as before.
    timestamps: bool | None = None
    #: Where the piece has speech (seconds from its start), found by the audio service's
    #: splitter when ``trim_segments`` is asked: the worker trims segments to it instead of
    #: running the VAD again. Lists, so that msgpack carries them.
    speech_spans: list[tuple[float, float]] = field(default_factory=list)
    #: Speaker labels (issue 17): the worker embeds the piece's speech windows beside the
    #: transcription and returns them in the reply; the gateway clusters the whole file's.
    diarize: bool = False
    #: Known speakers' reference clips (int16 PCM like ``pcm``), on the file's first piece
    #: only: its worker returns their embeddings, so they are compared with this file's alone.
    speaker_references: list[bytes] = field(default_factory=list)
    attempt: int = 0  # retries so far after the worker holding it died (audio_service/reaper.py)
    enqueued_at: float = field(default_factory=time.time)

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TranscriptionJob:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    @property
    def duration_s(self) -> float:
        return pcm_seconds(self.pcm)

    @property
    def job_id(self) -> str:
        """Unique per job: a stream's partials share their utterance's id, so add the seq;
        a retry gets its own id so it never collides with the dead attempt's RQ record."""
        base = self.utterance_id if self.kind == "final" else f"{self.utterance_id}-{self.kind[0]}{self.seq}"
        return f"{base}-r{self.attempt}" if self.attempt else base

    def routing(self, worker_id: str | None = None) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "index": self.index,
            "count": self.count,
            "worker_id": worker_id,
            "kind": self.kind,
            "seq": self.seq,
            "enqueued_at": self.enqueued_at,
        }
