"""Every Prometheus metric of the three services, in one module.

One place for the names keeps dashboards, alerts and tests honest: a metric is renamed
here or nowhere. All names carry the ``s2t_`` prefix, units in the name, ``_total`` on
counters (prometheus_client appends it) and histograms for durations. Each service's
metrics live in a registry of its own, so a process exposes its service's metrics (not
another service's idle zeros) plus the default process collector (memory, CPU, open
files) that prometheus_client registers by itself.

Recording sites call the small helpers below (one line per event) so instrumentation
stays out of the way of the code it measures.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: Latency buckets (seconds) from a fast partial to a slow 30 s piece on a busy CPU.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
#: Real-time factor: processing time / audio time; < 1 is faster than real time.
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

GATEWAY_REGISTRY = CollectorRegistry(auto_describe=True)
AUDIO_REGISTRY = CollectorRegistry(auto_describe=True)
WORKER_REGISTRY = CollectorRegistry(auto_describe=True)

# --- gateway -----------------------------------------------------------------------------

WS_CONNECTIONS = Gauge(
    "s2t_gateway_websocket_connections", "Open browser WebSocket connections (/ws)", registry=GATEWAY_REGISTRY
)
WS_MESSAGES = Counter(
    "s2t_gateway_websocket_messages",
    "Client messages received on /ws, by command",
    ["command"],
    registry=GATEWAY_REGISTRY,
)
TRANSCRIPTS_SENT = Counter(
    "s2t_gateway_transcripts_sent",
    "Transcripts sent to clients, final or partial",
    ["final"],
    registry=GATEWAY_REGISTRY,
)
E2E_LATENCY = Histogram(
    "s2t_gateway_transcript_latency_seconds",
    "End to end: request received (files) or utterance queued (live) until its final is sent",
    buckets=LATENCY_BUCKETS,
    registry=GATEWAY_REGISTRY,
)
ERRORS_SENT = Counter(
    "s2t_gateway_errors", "Errors sent to clients, by stable error code", ["code"], registry=GATEWAY_REGISTRY
)
QUEUE_DEPTH = Gauge(
    "s2t_queue_depth_jobs",
    "Jobs waiting in each Redis queue (read at scrape)",
    ["queue"],
    registry=GATEWAY_REGISTRY,
)
WORKERS_ALIVE = Gauge(
    "s2t_workers_alive", "Workers with a live heartbeat (read at scrape)", registry=GATEWAY_REGISTRY
)
LIVE_FIRST_PARTIAL = Histogram(
    "s2t_live_first_partial_seconds",
    "Live stream: recording started until the first partial reached the client",
    buckets=LATENCY_BUCKETS,
    registry=GATEWAY_REGISTRY,
)
LIVE_FINAL_LATENCY = Histogram(
    "s2t_live_final_latency_seconds",
    "Live stream: the audio service closed an utterance (pause confirmed) until its final was sent",
    buckets=LATENCY_BUCKETS,
    registry=GATEWAY_REGISTRY,
)
LIVE_STREAMS = Gauge(
    "s2t_live_streams", "Live streams admitted pool-wide (read at scrape)", registry=GATEWAY_REGISTRY
)
LIVE_CAPACITY = Gauge(
    "s2t_live_capacity_streams",
    "Live streams the pool can carry at S2T_LIVE_LATENCY_TARGET_S, from the workers' costs (at scrape)",
    registry=GATEWAY_REGISTRY,
)
LIVE_STREAM_LAG = Histogram(
    "s2t_live_stream_lag_seconds",
    "Per live stream, sampled every second: how long its oldest unanswered final has waited",
    buckets=LATENCY_BUCKETS,
    registry=GATEWAY_REGISTRY,
)
LIVE_REFUSALS = Counter(
    "s2t_live_refusals",
    "Live streams refused busy, by reason (capacity, max_live_streams, no_workers, redis_unavailable)",
    ["reason"],
    registry=GATEWAY_REGISTRY,
)
LIVE_LAGGING = Counter(
    "s2t_live_lagging",
    "Live streams whose lag passed a bound, by outcome (degraded: S2T_MAX_STREAM_LAG_S; ended)",
    ["outcome"],
    registry=GATEWAY_REGISTRY,
)

# --- audio_service -----------------------------------------------------------------------

DECODE_DURATION = Histogram(
    "s2t_audio_decode_duration_seconds",
    "ffmpeg decode time of one uploaded file",
    buckets=LATENCY_BUCKETS,
    registry=AUDIO_REGISTRY,
)
AUDIO_DECODED = Counter(
    "s2t_audio_decoded_seconds",
    "Seconds of audio decoded, by mode (file or live)",
    ["mode"],
    registry=AUDIO_REGISTRY,
)
ACTIVE_STREAMS = Gauge(
    "s2t_audio_active_streams", "Live streams currently open on this audio service", registry=AUDIO_REGISTRY
)
UTTERANCES_CUT = Counter(
    "s2t_audio_utterances",
    "Final utterances (live) and pieces (files) enqueued for transcription",
    ["mode"],
    registry=AUDIO_REGISTRY,
)
LIVE_PARTIALS_HELD = Counter(
    "s2t_audio_live_partials_held",
    "Partials the segmenter offered that were not sent, by reason (paused, thinned, "
    "candidate: the utterance's candidate final is in flight, pending: the last is not done)",
    ["reason"],
    registry=AUDIO_REGISTRY,
)
LIVE_PARTIAL_PACING = Counter(
    "s2t_audio_live_partial_pacing",
    "Live streams whose partials paused or resumed under load, by change",
    ["change"],
    registry=AUDIO_REGISTRY,
)
JOBS_REQUEUED = Counter(
    "s2t_audio_jobs_requeued",
    "Finals and file pieces queued again from the requeue buffer after Redis lost them",
    registry=AUDIO_REGISTRY,
)
REQUEUE_BUFFER_SECONDS = Gauge(
    "s2t_audio_requeue_buffer_seconds",
    "Seconds of audio kept in the requeue buffer (S2T_REQUEUE_BUFFER_SECONDS bounds it)",
    registry=AUDIO_REGISTRY,
)

# --- whisper_service ---------------------------------------------------------------------

TRANSCRIPTION_DURATION = Histogram(
    "s2t_worker_transcription_duration_seconds",
    "Model time for one job",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=WORKER_REGISTRY,
)
SPEAKERS_DURATION = Histogram(
    "s2t_worker_speakers_duration_seconds",
    "Speaker step of one diarized job (window embeddings and reference clips), beside its model time",
    buckets=LATENCY_BUCKETS,
    registry=WORKER_REGISTRY,
)
AUDIO_TRANSCRIBED = Counter(
    "s2t_worker_audio_transcribed_seconds",
    "Seconds of audio transcribed, by model",
    ["model"],
    registry=WORKER_REGISTRY,
)
REAL_TIME_FACTOR = Histogram(
    "s2t_worker_real_time_factor",
    "Processing time / audio duration per job",
    ["model"],
    buckets=RTF_BUCKETS,
    registry=WORKER_REGISTRY,
)
JOBS = Counter(
    "s2t_worker_jobs",
    "Jobs taken, by kind (final, partial, candidate) and outcome (ok, error, skipped)",
    ["kind", "outcome"],
    registry=WORKER_REGISTRY,
)
MODEL_LOAD_DURATION = Histogram(
    "s2t_worker_model_load_duration_seconds",
    "Time to load a model into memory",
    ["model"],
    buckets=LOAD_BUCKETS,
    registry=WORKER_REGISTRY,
)
MODELS_LOADED = Gauge(
    "s2t_worker_models_loaded", "Models resident in this worker's memory", registry=WORKER_REGISTRY
)
BATCH_SIZE = Histogram(
    "s2t_worker_batch_size",
    "Jobs transcribed together in one model call (1: the job ran alone)",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
    registry=WORKER_REGISTRY,
)
WORKER_BUSY = Gauge("s2t_worker_busy", "1 while this worker runs a job", registry=WORKER_REGISTRY)


# --- helpers -----------------------------------------------------------------------------


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text format body and content type, for any HTTP framework: the process
    collector's families, then the service's own (two expositions concatenate cleanly)."""
    return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST


def record_client_message(message: dict[str, Any]) -> None:
    """Count one message the gateway sends a client: transcripts, their latency, errors."""
    kind = message.get("type")
    if kind == "transcript":
        final = bool(message.get("final"))
        TRANSCRIPTS_SENT.labels(final=str(final).lower()).inc()
        latency_ms = message.get("latency_ms")
        if final and isinstance(latency_ms, int | float):
            E2E_LATENCY.observe(latency_ms / 1000)
    elif kind == "error":
        ERRORS_SENT.labels(code=str(message.get("code", "unknown"))).inc()


def record_transcription(model: str, audio_s: float, took_s: float) -> None:
    TRANSCRIPTION_DURATION.labels(model=model).observe(took_s)
    AUDIO_TRANSCRIBED.labels(model=model).inc(audio_s)
    if audio_s > 0:
        REAL_TIME_FACTOR.labels(model=model).observe(took_s / audio_s)
