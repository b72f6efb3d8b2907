"""A piece's speaker data as it crosses Redis in the worker's msgpack reply (no pickle).

Embeddings go as raw little-endian float32 bytes with their shape, times as plain lists:
msgpack carries both natively. The reader checks every shape, so a malformed reply is a
``ValueError`` at the gateway, never a numpy broadcast error later in the clustering.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.speakers.turns import Windows

#: The reply field holding a piece's speaker data; the gateway strips it before any client
#: sees the reply (``shared.jobs.client_view``).
REPLY_FIELD = "speakers"


def _matrix(data: bytes, rows: int, dim: int) -> np.ndarray:
    arr = np.frombuffer(data, dtype="<f4")
    if arr.size != rows * dim:
        raise ValueError(f"embeddings hold {arr.size} values, expected {rows}x{dim}")
    return arr.reshape(rows, dim).astype(np.float32)


def dump_vectors(vectors: np.ndarray) -> dict[str, Any]:
    vectors = np.asarray(vectors, dtype="<f4")
    dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    return {"rows": int(vectors.shape[0]), "dim": dim, "data": vectors.tobytes()}


def load_vectors(raw: Any) -> np.ndarray:
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), bytes):
        raise ValueError("vectors must be a map with 'rows', 'dim' and bytes 'data'")
    rows, dim = raw.get("rows"), raw.get("dim")
    if not isinstance(rows, int) or not isinstance(dim, int) or rows < 0 or dim < 0:
        raise ValueError("vectors need integer 'rows' and 'dim'")
    return _matrix(raw["data"], rows, dim)


def dump_piece(windows: Windows, references: np.ndarray | None, took_s: float) -> dict[str, Any]:
    """What a worker adds to a piece's reply: its windows, the known speakers' reference
    embeddings (only the piece that carried the clips), and the time the speaker step took."""
    out: dict[str, Any] = {
        "starts": [round(float(t), 3) for t in windows.starts],
        "ends": [round(float(t), 3) for t in windows.ends],
        "embeddings": dump_vectors(windows.embeddings),
        "took_s": round(took_s, 4),
    }
    if references is not None:
        out["references"] = dump_vectors(references)
    return out


def load_windows(raw: Any) -> Windows:
    if not isinstance(raw, dict):
        raise ValueError("speaker data must be a map")
    starts, ends = raw.get("starts"), raw.get("ends")
    if not isinstance(starts, list) or not isinstance(ends, list) or len(starts) != len(ends):
        raise ValueError("speaker windows need 'starts' and 'ends' of one length")
    emb = load_vectors(raw.get("embeddings"))
    if emb.shape[0] != len(starts):
        raise ValueError("one embedding per window is expected")
    return Windows(np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64), emb)


def load_references(raw: Any) -> np.ndarray | None:
    """The reference embeddings a piece's reply carries, or None when it carries none."""
    if not isinstance(raw, dict) or "references" not in raw:
        return None
    return load_vectors(raw["references"])
