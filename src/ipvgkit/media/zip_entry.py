"""Video bytes read straight out of a zip entry as a seekable file object (nothing is extracted).

:func:`open_zip` keeps one open ``ZipFile`` per zip and process (a worker probes many entries of the
same zip); :func:`close_zips` closes them.
"""

from __future__ import annotations

import io
import struct
import zipfile
from typing import BinaryIO


class _StoredEntry(io.RawIOBase):
    """A seekable read-only view of a stored (uncompressed) zip entry's bytes inside the zip file.

    ``ZipFile.open`` would also work, but on Python 3.11 every backward seek re-reads the entry from
    its start; PyAV and the box walk seek a lot.
    """

    def __init__(self, fh: BinaryIO, start: int, size: int):
        super().__init__()
        self._fh, self._start, self._size, self._pos = fh, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf) -> int:
        n = max(0, min(len(buf), self._size - self._pos))
        if n == 0:
            return 0
        self._fh.seek(self._start + self._pos)
        got = self._fh.readinto(memoryview(buf)[:n])
        self._pos += got
        return got


def open_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> BinaryIO:
    """A seekable file object for one entry: a direct view when stored, else ``ZipFile.open``."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return zf.open(info)
    raw = _RAW.get(zf.filename)
    if raw is None:
        raw = _RAW[zf.filename] = open(zf.filename, "rb")  # noqa: SIM115 - cached per process
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename!r}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    return io.BufferedReader(_StoredEntry(raw, start, info.file_size), buffer_size=64 * 1024)


_ZIPS: dict[str, zipfile.ZipFile] = {}
_RAW: dict[str, BinaryIO] = {}


def open_zip(path: str) -> zipfile.ZipFile:
    """One open ZipFile per zip and process (workers probe many entries of the same zip)."""
    zf = _ZIPS.get(path)
    if zf is None:
        zf = _ZIPS[path] = zipfile.ZipFile(path)
    return zf


def close_zips() -> None:
    """Close the zips this process keeps open (called after probing in-process)."""
    while _ZIPS:
        _, zf = _ZIPS.popitem()
        zf.close()
    while _RAW:
        _, fh = _RAW.popitem()
        fh.close()
