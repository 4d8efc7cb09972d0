"""Structural checks pydicom's lenient reader does not make: every declared length is present."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # Pixel Data, Float and Double Float Pixel Data
DEFER_BYTES = 4096  # large values (pixel data) are skipped by offset, never read into memory


@dataclass(frozen=True)
class Structure:
    """What a walk over the top-level elements found."""

    truncation: str | None
    has_pixel_data: bool | None  # None when the data set was not walked (deflated)


def inspect_structure(source: bytes | Path) -> Structure:
    """Walk the top-level elements: the first value that runs past the end, and whether pixels exist.

    Deflated data sets are inflated by the reader itself and are not walked here.
    """
    if isinstance(source, Path):
        with open(source, "rb") as stream:
            return _walk(stream, source.stat().st_size)
    return _walk(io.BytesIO(source), len(source))


def find_truncation(source: bytes | Path) -> str | None:
    """The first top-level element whose value runs past the end of the data, or ``None``."""
    return inspect_structure(source).truncation


def _walk(stream: BinaryIO, size: int) -> Structure:
    read_preamble(stream, force=False)
    meta = _read_file_meta_info(stream)
    syntax = UID(str(meta.get("TransferSyntaxUID", "")))
    if not syntax or syntax == DeflatedExplicitVRLittleEndian:
        return Structure(None, None)
    has_pixels = False
    for raw in data_element_generator(stream, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=DEFER_BYTES):
        has_pixels = has_pixels or raw.tag in PIXEL_TAGS
        if raw.length == UNDEFINED_LENGTH:
            continue
        end = raw.value_tell + raw.length
        if end > size or (raw.value is not None and len(raw.value) != raw.length):
            available = max(0, size - raw.value_tell)
            return Structure(
                f"{raw.tag} declara {raw.length} bytes y trae {available} / declares {raw.length}, has {available}",
                has_pixels,
            )
    return Structure(None, has_pixels)
