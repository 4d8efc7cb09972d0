"""The bad-input corpus: DICOM files a hospital network really produces, each with the status it deserves."""

from __future__ import annotations

import copy
import io
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless, generate_uid

from shared.synth import SyntheticView

SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class BadInput:
    """One corpus file and the DICOM status ingest must answer."""

    name: str
    data: bytes
    expected_status: int
    reason: str = ""  # words the answer's reason must carry


def _encode(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _without(view: SyntheticView, *keywords: str) -> bytes:
    dataset = copy.deepcopy(view.dataset)
    for keyword in keywords:
        delattr(dataset, keyword)
    return _encode(dataset)


def _with_uid(view: SyntheticView, keyword: str, uid: str) -> bytes:
    """The view with one UID replaced by a value that is not a UID (written as is, unvalidated)."""
    from pydicom import config

    dataset = copy.deepcopy(view.dataset)
    with config.disable_value_validation():
        setattr(dataset, keyword, uid)
        return _encode(dataset)


def _absurd_length(good: bytes) -> bytes:
    """Rewrite the length of the PatientName element to almost 4 GiB."""
    tag = struct.pack("<HH", 0x0010, 0x0010) + b"PN"
    at = good.index(tag)
    # Explicit VR PN has a 2-byte length; UN has a 4-byte one, which lets the length be absurd.
    return good[:at] + struct.pack("<HH", 0x0010, 0x0010) + b"UN\x00\x00" + struct.pack("<I", 0xFFFFFFF0) + good[at + 8 :]


def bad_inputs(view: SyntheticView) -> list[BadInput]:
    """The corpus, built from one good view of a synthetic study."""
    good = view.to_bytes()
    wrong_class = copy.deepcopy(view.dataset)
    wrong_class.SOPClassUID = CT_IMAGE_STORAGE
    wrong_class.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    return [
        BadInput("truncado.dcm", good[: len(good) - 5000], CANNOT_UNDERSTAND),
        BadInput("sin_pixeles.dcm", _without(view, "PixelData"), DATASET_DOES_NOT_MATCH),
        BadInput("sin_filas_columnas.dcm", _without(view, "Rows", "Columns"), DATASET_DOES_NOT_MATCH),
        BadInput("clase_sop_ct.dcm", _encode(wrong_class), SOP_CLASS_NOT_SUPPORTED),
        BadInput("sin_preambulo.dcm", good[132:], CANNOT_UNDERSTAND),
        BadInput("preambulo_basura.dcm", b"\xde\xad" * 66 + good[132:], CANNOT_UNDERSTAND),
        BadInput("longitud_absurda.dcm", _absurd_length(good), CANNOT_UNDERSTAND),
        BadInput("no_dicom.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40, CANNOT_UNDERSTAND),
        BadInput("sin_uids.dcm", _without(view, "StudyInstanceUID", "SeriesInstanceUID"), DATASET_DOES_NOT_MATCH),
        # A UID becomes a table key and part of an object name: "A/B"+"C" must never meet "A"+"B/C".
        BadInput("uid_con_diagonal.dcm", _with_uid(view, "SeriesInstanceUID", "1.2.3/../../4"), DATASET_DOES_NOT_MATCH),
        BadInput("uid_de_3000.dcm", _with_uid(view, "SOPInstanceUID", "1." + "2" * 2998), DATASET_DOES_NOT_MATCH),
        # Bombs and lies about the image: refused before anything is stored or decoded.
        BadInput("pixeles_cortos.dcm", short_pixel_data(view), DATASET_DOES_NOT_MATCH, "Pixel Data short"),
        BadInput("dimensiones_absurdas.dcm", absurd_dimensions(view), DATASET_DOES_NOT_MATCH, "absurd dimensions"),
        BadInput("cuadros_faltantes.dcm", missing_frames(view), DATASET_DOES_NOT_MATCH, "1 fragments for 3 frames"),
        BadInput("bomba_deflate.dcm", deflate_bomb(view), OUT_OF_RESOURCES, "inflates to more than"),
    ]


def huge_instance(view: SyntheticView, megabytes: int = 100) -> Dataset:
    """A valid MG instance of about ``megabytes`` MB (a square 16-bit image)."""
    side = int((megabytes * 1024 * 1024 / 2) ** 0.5)
    dataset = copy.deepcopy(view.dataset)
    dataset.Rows = dataset.Columns = side
    pixels = np.zeros((side, side), dtype=np.uint16)
    pixels[::7, ::5] = 3000
    dataset.PixelData = pixels.tobytes()
    dataset.SOPInstanceUID = generate_uid(entropy_srcs=[str(view.dataset.SOPInstanceUID), "grande"])
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


@lru_cache
def zip_bomb(megabytes: int = 800) -> bytes:
    """A ZIP of about a megabyte whose one entry inflates to ``megabytes`` MB of zeros."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        info = zipfile.ZipInfo("bomba/vista.dcm")
        info.compress_type = zipfile.ZIP_DEFLATED
        with bundle.open(info, "w", force_zip64=True) as entry:
            block = bytes(1024 * 1024)
            for _ in range(megabytes):
                entry.write(block)
    return archive.getvalue()


def _meta_and_dataset(dataset: Dataset) -> tuple[bytes, bytes]:
    """A Part 10 encoding split into preamble plus file meta, and the data set."""
    encoded = _encode(dataset)
    offset = 144 + struct.unpack("<I", encoded[140:144])[0]
    return encoded[:offset], encoded[offset:]


def short_pixel_data(view: SyntheticView) -> bytes:
    """Native Pixel Data half as long as Rows x Columns x Bits Allocated demand (its own length is right)."""
    dataset = copy.deepcopy(view.dataset)
    dataset.PixelData = dataset.PixelData[: len(dataset.PixelData) // 4 * 2]
    return _encode(dataset)


def absurd_dimensions(view: SyntheticView) -> bytes:
    """An image that says it is 40000 x 40000 pixels."""
    dataset = copy.deepcopy(view.dataset)
    dataset.Rows = dataset.Columns = 40000
    return _encode(dataset)


def missing_frames(view: SyntheticView) -> bytes:
    """RLE Pixel Data with one fragment where three frames are declared."""
    dataset = copy.deepcopy(view.dataset)
    dataset.compress(RLELossless, encoding_plugin="pydicom")
    dataset.NumberOfFrames = 3
    return _encode(dataset)


def deflate_bomb(view: SyntheticView, side: int = 14000) -> bytes:
    """A Deflated Explicit VR file of a few hundred KB whose data set inflates to ``side``² x 2 bytes."""
    dataset = copy.deepcopy(view.dataset)
    del dataset.PixelData
    dataset.Rows = dataset.Columns = side
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta, _ = _meta_and_dataset(dataset)
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    _, header = _meta_and_dataset(dataset)
    length = side * side * 2
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [meta, compressor.compress(header + struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\x00\x00" + struct.pack("<I", length))]
    block = bytes(1024 * 1024)
    for _ in range(length // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(bytes(length % len(block))))
    parts.append(compressor.flush())
    return b"".join(parts)


def rle_bomb(view: SyntheticView, side: int = 12000) -> bytes:
    """An RLE file of a few KB declaring ``side`` x ``side`` 16-bit pixels: valid headers, a decoder's bomb."""
    dataset = copy.deepcopy(view.dataset)
    dataset.Rows = dataset.Columns = side
    segment = b"\x81\x00" * 350  # runs of 128 zeros: far fewer than the declared pixels
    header = struct.pack("<16L", 2, 64, 64 + len(segment), *([0] * 13))
    dataset.PixelData = encapsulate([header + segment + segment])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = RLELossless
    return _encode(dataset)


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """The peak of Python allocations inside the block, in bytes (``box[0]``, set when the block ends)."""
    box = [0]
    tracemalloc.start()
    try:
        yield box
    finally:
        box[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
