"""msgpack for everything that crosses Redis: job payloads, replies, control messages.

No pickle: a Redis that several machines share must not be a way to run code on a
worker. The class doubles as RQ's serializer (RQ asks for an object with
``dumps``/``loads``), so job records in Redis are msgpack too.
"""

from __future__ import annotations

from typing import Any

import msgpack


def dumps(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def loads(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class MsgpackSerializer:
    """RQ serializer protocol (see rq.serializers.Serializer)."""

    dumps = staticmethod(dumps)
    loads = staticmethod(loads)
