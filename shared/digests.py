"""Content digests of stored objects: SHA-256 (identity, duplicate detection) and size.

Computed incrementally where the bytes arrive in pieces (a C-STORE spooled fragment by fragment),
so a large instance is never read back just to be hashed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ContentDigest:
    """SHA-256 (hex) of an object's bytes, and its size."""

    sha256: str
    size: int


class Digester:
    """Accumulates a ``ContentDigest`` over bytes written in pieces."""

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Add the next piece of the object."""
        self._sha256.update(data)
        self._size += len(data)

    @property
    def size(self) -> int:
        """Bytes added so far."""
        return self._size

    def digest(self) -> ContentDigest:
        """The digest of everything added so far."""
        return ContentDigest(sha256=self._sha256.hexdigest(), size=self._size)


def digest_bytes(data: bytes) -> ContentDigest:
    """The digest of an object held in memory."""
    return ContentDigest(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def digest_file(path: Path) -> ContentDigest:
    """The digest of a file, read in chunks."""
    digester = Digester()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digester.update(chunk)
    return digester.digest()
