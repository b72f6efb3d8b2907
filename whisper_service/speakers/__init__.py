"""Speaker labels (issue 17), the worker's half: the voice-embedding model and the
embedded windows of a piece. Clustering, labelling and DER are pure and live in
:mod:`shared.speakers`, where the gateway's file assembly can use them.
"""
