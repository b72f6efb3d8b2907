"""Files ffmpeg cannot read from a pipe, and an in-memory file to hand it instead.

An MP4, M4A or MOV written without "faststart" (phone voice memos, most encoders' default)
keeps its index, the ``moov`` box, after the samples. ffmpeg has to seek back to it, a
pipe cannot seek, and ffmpeg then reads no sample at all. Such a file reaches ffmpeg as a
memfd instead: an anonymous file that lives in RAM only, which ffmpeg opens by path and
seeks in. Nothing is written to disk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Top-level box types an ISO base media file (MP4, M4A, MOV, 3GP) may start with.
_ISO_FIRST_BOXES = {b"ftyp", b"wide", b"free", b"skip", b"mdat", b"moov", b"pnot"}


def needs_seeking(data: bytes) -> bool:
    """Whether ``data`` is ISO base media whose samples (``mdat``) come before its index."""
    if len(data) < 8 or data[4:8] not in _ISO_FIRST_BOXES:
        return False
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind == b"moov":
            return False
        if kind == b"mdat":
            return True
        if size == 1 and offset + 16 <= len(data):  # 64-bit size follows the type
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        if size < 8:  # 0 means "to the end"; anything else this small is damage
            return False
        offset += size
    return False


def can_hand_over_memory_files() -> bool:
    return hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


@contextlib.contextmanager
def memory_file(data: bytes) -> Iterator[tuple[int, str]]:
    """A memfd holding ``data``: its descriptor (for ``pass_fds``) and the path a child
    process opens it by. Closed on exit; the memory goes with the last open descriptor."""
    fd = os.memfd_create("s2t-upload", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield fd, f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
