"""OpenAI Realtime transcription sessions on ``/v1/realtime``: a protocol adapter over the
same live-recording machinery as the browser's ``/ws`` (audio service stream, VAD,
utterances, partial/final jobs, workers, limits, metrics)."""
