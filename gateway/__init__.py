"""Gateway: browser WebSocket, HTTP API, health and metrics; routes replies from Redis."""
