"""Deepgram's ``/v1/listen``: the live WebSocket (:mod:`gateway.deepgram.live`) and the
pre-recorded POST (:mod:`gateway.deepgram.prerecorded`), for clients written against
Deepgram's SDKs."""
