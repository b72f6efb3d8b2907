"""The worker's speaker step for one diarized piece, run beside its transcription.

Embeds the piece's speech windows (file-time offsets) and, on the piece that carries them,
the known speakers' reference clips; returns the reply field the gateway's file assembly
clusters (:mod:`shared.speakers.wire`). Timed apart from the model call, so the share of
worker time spent on speakers shows in the reply, the log and ``s2t_worker_speakers_*``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import structlog

from shared import metrics
from shared.jobs import TranscriptionJob
from shared.speakers import wire
from whisper_service.speakers.embedding import load_encoder
from whisper_service.speakers.pipeline import window_embeddings

log = structlog.get_logger()


def _pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def piece_speakers(job: TranscriptionJob, audio: np.ndarray, model: str) -> dict[str, Any]:
    """The ``speakers`` reply field of ``job`` (its float32 ``audio`` already decoded)."""
    started = time.perf_counter()
    encoder = load_encoder(model)
    windows = window_embeddings(audio, encoder, offset_s=job.offset_s)
    refs = encoder.embed_many([_pcm(c) for c in job.speaker_references]) if job.speaker_references else None
    took = time.perf_counter() - started
    metrics.SPEAKERS_DURATION.observe(took)
    log.info(
        "speakers_embedded",
        utterance_id=job.utterance_id,
        windows=len(windows.starts),
        references=len(job.speaker_references),
        took_s=round(took, 3),
    )
    return wire.dump_piece(windows, refs, took)
