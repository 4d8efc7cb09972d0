"""Structural checks pydicom's lenient reader does not make: every declared length is present."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

UNDEFINED_LENGTH = 0xFFFFFFFF
DEFER_BYTES = 4096  # large values (pixel data) are skipped by offset, never read into memory


def find_truncation(source: bytes | Path) -> str | None:
    """The first top-level element whose value runs past the end of the data, or ``None``.

    Deflated data sets are inflated by the reader itself and are not walked here.
    """
    if isinstance(source, Path):
        with open(source, "rb") as stream:
            return _walk(stream, source.stat().st_size)
    return _walk(io.BytesIO(source), len(source))


def _walk(stream: BinaryIO, size: int) -> str | None:
    read_preamble(stream, force=False)
    meta = _read_file_meta_info(stream)
    syntax = UID(str(meta.get("TransferSyntaxUID", "")))
    if not syntax or syntax == DeflatedExplicitVRLittleEndian:
        return None
    for raw in data_element_generator(stream, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=DEFER_BYTES):
        if raw.length == UNDEFINED_LENGTH:
            continue
        end = raw.value_tell + raw.length
        if end > size or (raw.value is not None and len(raw.value) != raw.length):
            available = max(0, size - raw.value_tell)
            return f"{raw.tag} declara {raw.length} bytes y trae {available} / declares {raw.length}, has {available}"
    return None
