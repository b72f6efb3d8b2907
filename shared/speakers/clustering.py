"""Pure speaker clustering and labelling (numpy only; fast tests in tests/test_diarization.py).

Agglomerative clustering with average cosine linkage; the number of speakers is chosen by
silhouette within the ``min_speakers``/``max_speakers`` hints. Labels follow OpenAI's
diarized_json: known speakers by name
(a cluster whose centroid matches a reference clip above ``match_threshold``), the rest
``A``, ``B``, ... in order of first appearance.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.1
MAX_SPEAKERS = 8
DEFAULT_MATCH_THRESHOLD = 0.65


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def cluster(
    embeddings: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> list[int]:
    """Cluster ids (0.., numbered by first appearance) for each row of ``embeddings``.

    The number of speakers is the one (within the hints) whose partition has the best mean
    silhouette; one speaker when no split reaches ``threshold`` silhouette (why not a fixed
    similarity cut: 2 s windows of one voice vary more than clip-level embeddings do)."""
    n = len(embeddings)
    if n == 0:
        return []
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise ValueError("min_speakers is greater than max_speakers")
    emb = _unit(np.asarray(embeddings, dtype=np.float64))
    sim = emb @ emb.T
    lo = max(1, min(min_speakers or 1, n))
    hi = max(lo, min(max_speakers or MAX_SPEAKERS, n))
    clusters: list[list[int]] = [[i] for i in range(n)]
    partitions: dict[int, list[list[int]]] = {}
    # Average linkage kept as a matrix between the current clusters and updated on each merge
    # (Lance-Williams), so a file of a few hundred windows clusters in well under a second
    # where re-averaging every pair on every merge took minutes; the merge order is the same.
    link = sim.copy()
    np.fill_diagonal(link, -np.inf)
    while True:
        if len(clusters) <= hi:
            partitions[len(clusters)] = [list(c) for c in clusters]
        if len(clusters) <= lo:
            break
        upper = np.triu(link, 1)
        upper[np.tril_indices(len(clusters))] = -np.inf
        a, b = divmod(int(np.argmax(upper)), len(clusters))
        na, nb = len(clusters[a]), len(clusters[b])
        merged = (na * link[a] + nb * link[b]) / (na + nb)
        link[a, :] = merged
        link[:, a] = merged
        link[a, a] = -np.inf
        link = np.delete(np.delete(link, b, axis=0), b, axis=1)
        clusters[a] = clusters[a] + clusters[b]
        del clusters[b]
    scored = {k: silhouette(sim, p) for k, p in partitions.items() if k >= 2}
    if scored and (lo >= 2 or max(scored.values()) >= threshold):
        k = max(scored, key=lambda key: scored[key])
    else:
        k = min(partitions)
    chosen = _absorb_small(partitions[k], emb, lo)
    ids = np.empty(n, dtype=int)
    for c, members in enumerate(chosen):
        ids[members] = c
    return renumber_by_first_appearance(ids.tolist())


def silhouette(sim: np.ndarray, clusters: list[list[int]]) -> float:
    """Mean silhouette with cosine distance (1 - similarity); singletons score 0."""
    dist = 1 - sim
    total = 0.0
    for ci, c in enumerate(clusters):
        for i in c:
            if len(c) == 1:
                continue
            a = float(dist[i, c].sum() / (len(c) - 1))
            b = min(float(dist[i, o].mean()) for oi, o in enumerate(clusters) if oi != ci)
            total += (b - a) / max(a, b, 1e-12)
    return total / sim.shape[0]


def _absorb_small(clusters: list[list[int]], emb: np.ndarray, keep_at_least: int) -> list[list[int]]:
    """Clusters holding under 15% of the windows (and under 3) join the nearest big one:
    short windows of one voice scatter into stray clusters that are not new speakers."""
    n = sum(len(c) for c in clusters)
    small = lambda c: len(c) < max(3, int(0.15 * n)) and len(c) < n  # noqa: E731
    big = [c for c in clusters if not small(c)]
    if not big or len(big) < keep_at_least:
        return clusters
    cents = np.stack([emb[c].mean(axis=0) for c in big])
    for c in clusters:
        if small(c):
            for i in c:
                big[int(np.argmax(cents @ emb[i]))].append(i)
    return big


def renumber_by_first_appearance(ids: Sequence[int]) -> list[int]:
    """0 for the first id seen, 1 for the next new one, ... (why: labels A, B in order)."""
    seen: dict[int, int] = {}
    return [seen.setdefault(i, len(seen)) for i in ids]


def letter(i: int) -> str:
    """A..Z, then AA, AB, ... like spreadsheet columns."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = string.ascii_uppercase[r] + out
    return out


def label_clusters(
    ids: Sequence[int],
    embeddings: np.ndarray,
    known: dict[str, np.ndarray] | None = None,
    *,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> list[str]:
    """A label per item: a known name where the cluster's centroid matches its reference
    best (each name used once, best matches first), otherwise A, B, ... by first appearance."""
    ids = list(ids)
    if not ids:
        return []
    emb = _unit(np.asarray(embeddings, dtype=np.float64))
    order = renumber_by_first_appearance(ids)
    n_clusters = max(order) + 1
    centroids = _unit(
        np.stack([emb[[j for j, c in enumerate(order) if c == k]].mean(axis=0) for k in range(n_clusters)])
    )
    names: dict[int, str] = {}
    if known:
        keys = list(known)
        refs = _unit(np.stack([np.asarray(known[k], dtype=np.float64) for k in keys]))
        scores = centroids @ refs.T
        pairs = sorted(
            ((scores[c, r], c, r) for c in range(n_clusters) for r in range(len(keys))), reverse=True
        )
        used: set[int] = set()
        for s, c, r in pairs:
            if s < match_threshold:
                break
            if c in names or r in used:
                continue
            names[c] = keys[r]
            used.add(r)
    next_letter = 0
    for k in range(n_clusters):
        if k not in names:
            names[k] = letter(next_letter)
            next_letter += 1
    return [names[c] for c in order]
