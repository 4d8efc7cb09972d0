"""Digests taken piece by piece (while a C-STORE arrives) equal the digest of the whole file."""

from __future__ import annotations

import gc
import hashlib
from pathlib import Path

from services.ingest.adapters.scp import SpoolFile, spool_at
from shared.digests import Digester, digest_bytes, digest_file
from shared.s3_upload import crc32_header


def test_digest_in_pieces_equals_digest_of_the_whole() -> None:
    data = bytes(range(256)) * 5000 + b"fin"
    digester = Digester()
    for start in range(0, len(data), 4099):
        digester.update(memoryview(data)[start : start + 4099])
    whole = digest_bytes(data)
    assert digester.digest() == whole
    assert whole.sha256 == hashlib.sha256(data).hexdigest()
    assert whole.size == len(data)


def test_crc32_header_is_big_endian_base64_for_bytes_and_files(tmp_path: Path) -> None:
    assert crc32_header(b"123456789") == "y/Q5Jg=="  # the CRC-32 check value 0xCBF43926
    path = tmp_path / "x.bin"
    path.write_bytes(b"123456789")
    with open(path, "rb") as handle:
        assert crc32_header(handle) == "y/Q5Jg=="
        assert handle.read() == b"123456789"  # left where it was, ready to be sent


def test_spool_file_digests_what_it_writes_until_it_is_released(tmp_path: Path) -> None:
    spool = SpoolFile(tmp_path)
    for piece in (b"\x00" * 128, b"DICM", bytes(range(256)) * 64):
        spool.write(piece)
    spool.file.flush()
    path = Path(spool.name)
    assert path.parent == tmp_path
    found = spool_at(path)
    assert found is spool and found.digester.digest() == digest_file(path)
    del found
    spool.close()
    del spool
    gc.collect()
    assert spool_at(path) is None
