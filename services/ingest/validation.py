"""Structural checks pydicom's lenient reader does not make: every declared length is present."""

from __future__ import annotations

import io

from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

UNDEFINED_LENGTH = 0xFFFFFFFF


def find_truncation(encoded: bytes) -> str | None:
    """The first top-level element whose value is shorter than its declared length, or ``None``.

    Deflated data sets are inflated by the reader itself and are not walked here.
    """
    stream = io.BytesIO(encoded)
    read_preamble(stream, force=False)
    meta = _read_file_meta_info(stream)
    syntax = UID(str(meta.get("TransferSyntaxUID", "")))
    if not syntax or syntax == DeflatedExplicitVRLittleEndian:
        return None
    for raw in data_element_generator(stream, syntax.is_implicit_VR, syntax.is_little_endian):
        if raw.length != UNDEFINED_LENGTH and raw.value is not None and len(raw.value) != raw.length:
            return f"{raw.tag} declara {raw.length} bytes y trae {len(raw.value)} / declares {raw.length}, has {len(raw.value)}"
    return None
