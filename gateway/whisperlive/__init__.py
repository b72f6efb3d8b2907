"""WhisperLive's WebSocket protocol at the root path, for clients written against
collabora/WhisperLive (its Python client, browser extensions, apps)."""
