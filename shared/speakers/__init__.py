"""Speaker labels (issue 17), the pure half: clustering, labelling, turns and DER (numpy).

Here, not in whisper_service, because the labelling runs where a file's pieces meet (the
gateway's file assembly), and the gateway may not import the worker's code. The worker keeps
the embedding model and the window extraction (whisper_service/speakers); the windows'
embeddings travel between them in the msgpack reply (:mod:`shared.speakers.wire`).
"""
