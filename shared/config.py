"""The one place configuration lives.

Every tunable is an environment variable with the ``S2T_`` prefix so that the three
services, the compose file and ``whisper-appliance up`` agree on names without
passing flags around. Services print the effective settings at start (secrets masked)
so an operator can see what a container actually runs with.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.redis_url import validate_redis_url


def cpu_count() -> int:
    """Cores this process may use (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    # hide_input_in_errors: a bad S2T_REDIS_URL's error must not print the password inside it.
    model_config = SettingsConfigDict(env_prefix="S2T_", extra="ignore", hide_input_in_errors=True)

    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr | None = None

    @field_validator("redis_url")
    @classmethod
    def _redis_url_usable(cls, url: str) -> str:
        """A typo in the URL stops the service at start, naming the setting."""
        return validate_redis_url(url)

    # Network
    host: str = "127.0.0.1"
    port: int = 8000
    audio_service_url: str = "http://127.0.0.1:8001"
    #: How long the gateway keeps sending a file again to an audio service whose connection
    #: failed (refused, or dropped before it answered: a restart); 0: once only.
    audio_service_retry_s: float = 20.0
    audio_port: int = 8001
    api_key: SecretStr | None = None
    allowed_origins: str = ""

    # Models
    model: str = "tiny.en"
    models_dir: str = Field(default_factory=lambda: os.path.expanduser("~/.cache/whisper-appliance/models"))
    max_models: int = 2
    #: Speaker labels (issue 17): the voice encoder workers embed with. ``resemblyzer``: the
    #: weights bundled in that wheel (offline); a pyannote/WeSpeaker name loads through
    #: pyannote.audio when installed and reachable.
    speaker_model: str = "resemblyzer"
    # Backend for names without an ``@faster-whisper``/``@openai-whisper`` suffix.
    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    device: str = "auto"
    compute_type: str = "default"
    cpu_threads: int = 0  # 0: cores divided by the number of workers on this machine
    workers: int = 0  # 0: cores / 2, at least 1 (for `up`)
    beam_size: int = 5  # finals and files
    partial_beam_size: int = 1  # live partials: greedy, they are replaced anyway
    # Decode settings, chosen by bench/decode_settings.py (README, "Decode settings").
    #: auto: files decode timestamp tokens only when the reply needs segment times (srt, vtt,
    #: verbose_json, word timings, streaming); always: every file does.
    file_timestamps: Literal["auto", "always"] = "auto"
    temperature_fallback: bool = False  # files and live finals: re-decode hard windows hotter
    partial_temperature_fallback: bool = False
    condition_on_previous_text: bool = False  # files longer than one 30 s window
    batch_size: int = 0  # jobs a worker transcribes in one model call when they wait; 1: off, 0: auto
    model_load_timeout_s: float = 300.0

    # Live streams
    vad_pause_s: float = 0.5  # a pause this long ends an utterance
    max_utterance_s: float = 20.0  # longer speech is cut here
    partial_interval_s: float = 1.0
    #: An utterance's first partial after this much speech (sooner than the cadence: the
    #: first words on screen are what a speaker notices most); 0: at the cadence.
    first_partial_s: float = 0.5
    # Partials under load (audio_service/pacer.py): they thin, then pause, before any final
    # slows; the client is told when they pause and resume.
    partial_max_interval_s: float = 4.0  # thinned at most to one per this much speech
    #: A partial that waited this long in the queue (or a final waiting) thins the cadence.
    partial_busy_wait_s: float = 0.5
    partial_pause_wait_s: float = 2.0  # a partial that waited this long pauses partials
    partial_resume_s: float = 3.0  # paused partials resume after the pool is calm this long
    #: A partial's encoder window, seconds: at least this, and its audio plus 2 s (whole
    #: seconds), instead of Whisper's 30 s (bench/partial_window.py: 3x cheaper, text near
    #: the 30 s one; under 10 s Whisper repeats itself to fill the window). 0: 30 s, as
    #: finals; finals never change.
    partial_window_s: float = 15.0

    # Limits
    max_audio_bytes: int = 10 * 1024 * 1024
    max_audio_seconds: float = 3 * 3600.0
    max_piece_seconds: float = 30.0
    job_timeout_s: int = 60
    job_ttl_s: int = 600
    #: How long a live recording whose connection dropped waits to be resumed (gateway/live_sessions.py).
    resume_window_s: float = 30.0
    max_clients: int = 50
    rate_limit_per_minute: int = 100  # client messages per connection; 0: no limit
    rate_limit_grace: int = 20  # refusals within a minute before the connection is closed (1008)
    max_queue_length: int = 1000  # jobs waiting in Redis; beyond it new files get ``busy`` (429)

    # Live capacity and admission (shared/capacity.py, shared/admission.py, README "Live
    # capacity and admission"): a new live stream is admitted while the pool-wide count of
    # admitted streams is under the smaller of what the workers' measured costs carry at
    # the latency target and the static cap; the rest get ``busy``.
    live_latency_target_s: float = 1.0
    max_live_streams: int = 0  # static cap on top of the measured capacity; 0: none
    #: A stream whose oldest unanswered final has waited longer than this is lagging (logged,
    #: counted); past ``stream_lag_end_s`` it ends with ``stream_lagging``. 0: no watchdog.
    max_stream_lag_s: float = 3.0
    #: Longer than a dead worker's final takes to come back without ``up`` (the heartbeat's
    #: 15 s TTL, then the reaper's retry), so a recovery in progress is not cut short.
    stream_lag_end_s: float = 20.0
    live_retry_after_s: float = 5.0  # what a refused live stream is told to wait

    # Redis restarts (shared/requeue.py): the audio service keeps each final and file piece
    # it queued, bounded, until a worker answers it, and queues it again if Redis loses it.
    requeue_buffer_seconds: float = 3600.0  # of audio kept (16 kHz PCM: 115 MB per hour)
    requeue_buffer_jobs: int = 5000  # jobs kept with their audio
    #: How long a worker retries a reply it could not publish (Redis away) before the
    #: audio service's copy is used (whisper_service/reply_publisher.py).
    reply_retry_s: float = 30.0

    # WhisperLive's clients connect to ws://host:9090 by default; a port here makes the
    # gateway listen on it too (the same app: WhisperLive's protocol at "/"). 0: off.
    whisperlive_port: int = 0

    # Worker /metrics + /health (one port per worker process; `up` picks a free one each)
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9100  # 0: no HTTP endpoint

    # `up` restarts a child that exits; more than restart_limit exits of one child within
    # restart_window_s is a crash loop and stops `up` (whisper_appliance/restart_policy.py).
    restart_limit: int = 5  # 0: any exit stops `up`
    restart_window_s: float = 120.0
    restart_backoff_s: float = 0.5  # doubles with each exit within the window
    restart_backoff_max_s: float = 10.0
    supervisor_id: str | None = None  # set by `up` for its children: whose restarts /health shows

    # Logging
    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON when stdout is not a terminal

    def effective_cpu_threads(self) -> int:
        """Threads one worker may use so that N workers on M cores do not oversubscribe."""
        if self.cpu_threads > 0:
            return self.cpu_threads
        return max(1, cpu_count() // max(1, self.effective_workers()))

    def effective_batch_size(self, device: str) -> int:
        """``S2T_BATCH_SIZE``, or for 0 what pays on ``device``: 8 on a GPU, where the encoder
        batches well, and 1 (off) on a CPU, where a batch of 8 gained 7-29 % file throughput
        but doubled live final latency at 8 streams (README, "Batching")."""
        if self.batch_size > 0:
            return self.batch_size
        return 8 if device == "cuda" else 1

    def effective_workers(self) -> int:
        return self.workers if self.workers > 0 else max(1, cpu_count() // 2)

    def origins(self) -> list[str]:
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    def masked(self) -> dict[str, Any]:
        """Settings as printable values; secrets and passwords inside URLs are hidden."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr):
                value = "***" if getattr(self, name).get_secret_value() else None
            elif name.endswith("_url") and isinstance(value, str):
                value = mask_url_password(value)
            out[name] = value
        return out


def mask_url_password(url: str) -> str:
    """redis://user:secret@host -> redis://user:***@host; a Sentinel URL's
    ``sentinel_password=`` option too."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, question, query = rest.partition("?")
    if question:
        query = re.sub(r"(^|&)(sentinel_password=)[^&]*", r"\1\2***", query)
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        creds, _, host = authority.rpartition("@")
        user, colon, _ = creds.partition(":")
        authority = f"{user}{':***' if colon else ''}@{host}"
    return f"{scheme}://{authority}{slash}{path}{question}{query}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
