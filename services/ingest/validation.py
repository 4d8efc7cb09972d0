"""Structural checks pydicom's lenient reader does not make, and the bounds on what an instance may be.

Every declared length is present; an instance is no larger than the configured limit; a Deflated
data set is inflated in chunks to a temporary file under a limit, never whole in memory; native
Pixel Data is as long as Rows x Columns x Samples per Pixel x Bits Allocated x Number of Frames
demands, encapsulated Pixel Data has a fragment for every declared frame; and the dimensions are
not absurd.
"""

from __future__ import annotations

import io
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from struct import unpack
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_dataset, read_preamble
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from shared.settings import Settings

UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
PIXEL_TAGS = frozenset({PIXEL_DATA, 0x7FE00008, 0x7FE00009})  # Pixel Data, Float and Double Float Pixel Data
DEFER_BYTES = 4096  # large values (pixel data) are skipped by offset, never read into memory
CHUNK_BYTES = 1024 * 1024
ITEM, SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
SUBSAMPLED_PHOTOMETRICS = frozenset({"YBR_FULL_422", "YBR_PARTIAL_422"})


class InstanceTooLarge(ValueError):
    """The instance, or its inflated data set, is larger than this deployment accepts."""


@dataclass(frozen=True)
class InputLimits:
    """How large an instance and its image may be (``MDD_INSTANCE_MAX_BYTES``, ``MDD_INFLATED_MAX_BYTES``,
    ``MDD_IMAGE_MAX_SIDE``, ``MDD_IMAGE_MAX_PIXELS``)."""

    instance_max_bytes: int
    inflated_max_bytes: int
    image_max_side: int
    image_max_pixels: int

    @classmethod
    def from_settings(cls, settings: Settings) -> InputLimits:
        """The limits configured for this deployment."""
        return cls(settings.instance_max_bytes, settings.inflated_max_bytes, settings.image_max_side, settings.image_max_pixels)


#: The limits with every setting at its default.
DEFAULT_LIMITS = InputLimits.from_settings(Settings.model_construct())


@dataclass(frozen=True)
class Structure:
    """What a walk over the top-level elements found."""

    truncation: str | None
    has_pixel_data: bool | None  # None when the data set was not walked (no transfer syntax)
    native_pixel_bytes: int | None = None  # the length of native Pixel Data
    fragments: int | None = None  # the fragments of encapsulated Pixel Data
    offsets: int | None = None  # the entries of its Basic Offset Table (0 when empty)


def inspect_structure(source: bytes | Path, limits: InputLimits = DEFAULT_LIMITS) -> Structure:
    """Walk the top-level elements: the first value that runs past the end, and what the pixels are."""
    return read_checked(source, limits)[1]


def find_truncation(source: bytes | Path) -> str | None:
    """The first top-level element whose value runs past the end of the data, or ``None``."""
    return inspect_structure(source).truncation


def read_checked(source: bytes | Path, limits: InputLimits = DEFAULT_LIMITS) -> tuple[Dataset, Structure]:
    """The header (pixel data not read) and the structure of an encoded instance, within ``limits``.

    Raises :class:`InstanceTooLarge` past the size limits; pydicom's errors when the file is unreadable.
    """
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if size > limits.instance_max_bytes:
        raise InstanceTooLarge(
            f"La instancia ocupa {size} bytes, el máximo es {limits.instance_max_bytes} / the instance is {size} bytes, "
            f"at most {limits.instance_max_bytes} are accepted"
        )
    with (open(source, "rb") if isinstance(source, Path) else io.BytesIO(source)) as stream:
        read_preamble(stream, force=False)
        meta = _read_file_meta_info(stream)
        syntax = UID(str(meta.get("TransferSyntaxUID", "")))
        if syntax == DeflatedExplicitVRLittleEndian:
            return _read_deflated(stream, meta, limits.inflated_max_bytes)
        start = stream.tell()
        stream.seek(0)
        dataset = dcmread(stream, stop_before_pixels=True)
        if not syntax:
            return dataset, Structure(None, None)
        stream.seek(start)
        return dataset, _walk(stream, size, syntax.is_implicit_VR, syntax.is_little_endian)


def _read_deflated(stream: BinaryIO, meta: FileMetaDataset, max_bytes: int) -> tuple[Dataset, Structure]:
    """Inflate the data set in chunks into a temporary file, refusing it past ``max_bytes``, and read it there."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    with tempfile.TemporaryFile() as inflated:
        length = 0
        while True:
            compressed = stream.read(CHUNK_BYTES)
            data = inflater.decompress(compressed, CHUNK_BYTES) if compressed else inflater.flush()
            while data:
                length += len(data)
                if length > max_bytes:
                    raise InstanceTooLarge(
                        f"Deflated se infla a más de {max_bytes} bytes (bomba) / the Deflated data set inflates to "
                        f"more than {max_bytes} bytes (bomb)"
                    )
                inflated.write(data)
                data = inflater.decompress(inflater.unconsumed_tail, CHUNK_BYTES) if inflater.unconsumed_tail else b""
            if not compressed or inflater.eof:
                break
        inflated.seek(0)
        dataset = read_dataset(inflated, False, True, stop_when=lambda tag, vr, length: tag in PIXEL_TAGS)
        dataset.file_meta = meta
        inflated.seek(0)
        return dataset, _walk(inflated, length, False, True)


def _walk(stream: BinaryIO, size: int, implicit: bool, little: bool) -> Structure:
    has_pixels = False
    native: int | None = None
    fragments: int | None = None
    offsets: int | None = None
    for raw in data_element_generator(stream, implicit, little, defer_size=DEFER_BYTES):
        has_pixels = has_pixels or raw.tag in PIXEL_TAGS
        if raw.length == UNDEFINED_LENGTH:
            if raw.tag == PIXEL_DATA:
                resume = stream.tell()
                fragments, offsets, problem = _fragments(stream, raw.value_tell, size, "<" if little else ">")
                stream.seek(resume)
                if problem:
                    return Structure(problem, has_pixels)
            continue
        end = raw.value_tell + raw.length
        if end > size or (raw.value is not None and len(raw.value) != raw.length):
            available = max(0, size - raw.value_tell)
            return Structure(
                f"{raw.tag} declara {raw.length} bytes y trae {available} / declares {raw.length}, has {available}",
                has_pixels,
            )
        if raw.tag == PIXEL_DATA:
            native = raw.length
    return Structure(None, has_pixels, native, fragments, offsets)


def _fragments(stream: BinaryIO, start: int, size: int, endian: str) -> tuple[int, int, str | None]:
    """The fragments and Basic Offset Table entries of encapsulated Pixel Data, seeking over their values."""
    stream.seek(start)
    items: list[int] = []
    while True:
        head = stream.read(8)
        if len(head) < 8:
            return 0, 0, "Pixel Data encapsulado sin delimitador / encapsulated Pixel Data without its delimiter"
        group, element, length = unpack(f"{endian}HHL", head)
        tag = group << 16 | element
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM or length == UNDEFINED_LENGTH or stream.tell() + length > size:
            return 0, 0, f"Fragmento de Pixel Data inválido en {stream.tell() - 8} / invalid Pixel Data fragment at {stream.tell() - 8}"
        items.append(length)
        stream.seek(length, 1)
    if not items:
        return 0, 0, "Pixel Data encapsulado sin tabla de desplazamientos / encapsulated Pixel Data without its offset table"
    return len(items) - 1, items[0] // 4, None


def _int(dataset: Dataset, keyword: str, default: int | None = None) -> int | None:
    try:
        value = dataset.get(keyword, default)
        return default if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def image_problem(dataset: Dataset, structure: Structure, limits: InputLimits = DEFAULT_LIMITS) -> str | None:
    """Why the image's dimensions or pixel data cannot be right, or ``None``.

    Absurd dimensions (a side over ``image_max_side``, more pixels than ``image_max_pixels``), native
    Pixel Data shorter than the dimensions demand, fewer encapsulated fragments (or offset table
    entries) than declared frames.
    """
    rows, columns = _int(dataset, "Rows"), _int(dataset, "Columns")
    samples, bits, frames = _int(dataset, "SamplesPerPixel", 1), _int(dataset, "BitsAllocated"), _int(dataset, "NumberOfFrames", 1)
    if rows is None or columns is None or samples is None or bits is None or frames is None:
        return None  # missing or unreadable: the check for required attributes answers
    if max(rows, columns) > limits.image_max_side or min(rows, columns, samples, bits, frames) < 1:
        return (f"Dimensiones absurdas / absurd dimensions: {rows} x {columns} x {frames} cuadros / frames "
                f"(lado máximo / largest side {limits.image_max_side})")
    if rows * columns * frames > limits.image_max_pixels:
        return (f"Demasiados píxeles / too many pixels: {rows} x {columns} x {frames} > {limits.image_max_pixels}")
    if structure.native_pixel_bytes is not None:
        if str(dataset.get("PhotometricInterpretation", "")).upper() in SUBSAMPLED_PHOTOMETRICS:
            samples = 2  # PS3.5 8.2: two chrominance samples shared by each pair of pixels
        expected = (rows * columns * samples * frames * bits + 7) // 8
        have = structure.native_pixel_bytes
        if have < expected:
            return (f"Pixel Data corto: {have} de {expected} bytes / Pixel Data short: {have} of the {expected} bytes "
                    "Rows x Columns x Samples per Pixel x Bits Allocated x Number of Frames require")
    if structure.fragments is not None:
        if structure.fragments < frames:
            return (f"Pixel Data encapsulado con {structure.fragments} fragmentos para {frames} cuadros / encapsulated "
                    f"Pixel Data has {structure.fragments} fragments for {frames} frames")
        if structure.offsets and structure.offsets != frames:
            return (f"Tabla de desplazamientos con {structure.offsets} entradas para {frames} cuadros / offset table has "
                    f"{structure.offsets} entries for {frames} frames")
    return None
