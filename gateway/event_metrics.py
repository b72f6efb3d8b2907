"""Prometheus counts of what the gateway tells its clients, taken from the typed events
(whatever protocol renders them): transcripts sent and their end-to-end latency, errors
by code."""

from __future__ import annotations

from gateway import events
from shared import metrics


def record(event: events.Event) -> None:
    match event:
        case events.PartialText():
            metrics.TRANSCRIPTS_SENT.labels(final="false").inc()
        case events.FinalText() | events.PieceDone():
            metrics.TRANSCRIPTS_SENT.labels(final="true").inc()
            latency_ms = event.message.get("latency_ms")
            if isinstance(latency_ms, int | float):
                metrics.E2E_LATENCY.observe(latency_ms / 1000)
        case (
            events.UtteranceFailed()
            | events.PieceFailed()
            | events.RecordingFailed()
            | events.FileRefused()
            | events.RequestError()
        ):
            metrics.ERRORS_SENT.labels(code=event.code or "unknown").inc()
