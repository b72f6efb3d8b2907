"""RQ job records whose payload is stored as is, not zlib-compressed.

RQ compresses every job's data with zlib when it saves the record. Our payload is
mostly 16-bit PCM, which zlib shrinks by about 12 % at a cost of about 12 ms per 11 s
of audio: on the path of every file and every live utterance, for nothing. RQ's own
``Job.restore`` already falls back to uncompressed data when ``zlib.decompress``
fails (a msgpack array never starts with a zlib header), so workers, the reaper and
the batching gatherer read these records with stock RQ.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job


class UncompressedJob(Job):
    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
        data = self.data
        self._data = b""  # RQ compresses this one: nothing
        try:
            record = super().to_dict(include_meta=include_meta, include_result=include_result)
        finally:
            self._data = data
        record["data"] = data
        return record
