"""Which worker is transcribing which job, so that a job whose worker died is not lost.

RQ notices an abandoned job only in its periodic maintenance (minutes) and then merely
marks it failed. Instead each worker records the job it starts in one Redis hash
(:data:`shared.redis_keys.INFLIGHT_KEY`) and removes it when done; the audio service's
reaper (``audio_service/reaper.py``) retries or reports entries whose worker's
heartbeat key has expired. An entry holds routing fields only, never audio or text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from shared import codec
from shared.jobs import TranscriptionJob
from shared.redis_keys import INFLIGHT_KEY


@dataclass
class InflightEntry:
    job_id: str
    worker_id: str
    queue: str
    started_at: float
    job: dict[str, Any]  # TranscriptionJob.to_wire() without ``pcm``

    def routing_job(self) -> TranscriptionJob:
        """The job without its audio: enough to address a reply to its client."""
        return TranscriptionJob.from_wire({**self.job, "pcm": b""})


def claim(client: redis.Redis, job_id: str, worker_id: str, queue: str, job: TranscriptionJob) -> None:
    wire = {k: v for k, v in job.to_wire().items() if k != "pcm"}
    entry = {"worker": worker_id, "queue": queue, "at": time.time(), "job": wire}
    client.hset(INFLIGHT_KEY, job_id, codec.dumps(entry))


def release(client: redis.Redis, job_id: str) -> None:
    client.hdel(INFLIGHT_KEY, job_id)


def entries(client: redis.Redis) -> list[InflightEntry]:
    out = []
    for job_id, raw in client.hgetall(INFLIGHT_KEY).items():
        try:
            data = codec.loads(raw)
            out.append(
                InflightEntry(
                    job_id=job_id.decode() if isinstance(job_id, bytes) else str(job_id),
                    worker_id=str(data["worker"]),
                    queue=str(data["queue"]),
                    started_at=float(data["at"]),
                    job=dict(data["job"]),
                )
            )
        except Exception:  # a malformed entry is dropped rather than blocking the reaper
            client.hdel(INFLIGHT_KEY, job_id)
    return out
