"""WADO-RS (DICOM PS3.18 §10.4) pieces: Accept negotiation, transcoding, multipart bodies, frames, rendering.

Instances go out in the transfer syntax the client accepts: as stored for ``transfer-syntax=*`` (or
no Accept at all), Explicit VR Little Endian when ``application/dicom`` names none (the standard's
default), otherwise transcoded to the one it names among :data:`TRANSCODE_TARGETS` (lossless
only: Explicit VR Little Endian, RLE, JPEG-LS and JPEG 2000 lossless), decoding the stored pixels
first. Frames likewise: as stored when the client accepts that (an encapsulated syntax gives the
frame's compressed bytes, labelled ``image/jp2``, ``image/jls``, ``image/jpeg``, ``image/dicom-rle``
or ``application/octet-stream; transfer-syntax=...`` for ``transfer-syntax=*``), decoded to native
little-endian pixels for plain ``application/octet-stream``, or encoded to the lossless image type
the client asks for. Colour frames decoded this way come out as RGB.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import pydicom
from pydicom.encaps import get_frame
from pydicom.pixels import pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from shared.imaging.display import DECODE_MAX_BYTES, DecodeBudgetExceeded, require_decode_budget, to_display, to_uint8

NATIVE: Final[str] = ExplicitVRLittleEndian
OCTET_STREAM: Final[str] = "application/octet-stream"
DICOM: Final[str] = "application/dicom"
DICOM_JSON: Final[str] = "application/dicom+json"

#: Media types of compressed frames per transfer syntax (PS3.18 Table 8.7.3-2); the first is sent.
FRAME_MEDIA_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "1.2.840.10008.1.2.5": ("image/dicom-rle", "image/x-dicom-rle"),
    "1.2.840.10008.1.2.4.50": ("image/jpeg",),
    "1.2.840.10008.1.2.4.51": ("image/jpeg",),
    "1.2.840.10008.1.2.4.57": ("image/jpeg",),
    "1.2.840.10008.1.2.4.70": ("image/jpeg",),
    "1.2.840.10008.1.2.4.80": ("image/jls", "image/x-jls"),
    "1.2.840.10008.1.2.4.81": ("image/jls", "image/x-jls"),
    "1.2.840.10008.1.2.4.90": ("image/jp2",),
    "1.2.840.10008.1.2.4.91": ("image/jp2",),
    "1.2.840.10008.1.2.4.92": ("image/jpx",),
    "1.2.840.10008.1.2.4.93": ("image/jpx",),
    "1.2.840.10008.1.2.4.201": ("image/jphc",),
    "1.2.840.10008.1.2.4.202": ("image/jphc",),
    "1.2.840.10008.1.2.4.203": ("image/jphc",),
}
#: Transfer syntaxes we can transcode any stored instance to (lossless), and their frame media types.
TRANSCODE_TARGETS: Final[dict[str, str]] = {
    ExplicitVRLittleEndian: OCTET_STREAM,
    RLELossless: "image/dicom-rle",
    JPEGLSLossless: "image/jls",
    JPEG2000Lossless: "image/jp2",
}
_SLICEABLE: Final[frozenset[str]] = frozenset(
    {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
)


class NotAcceptable(ValueError):
    """No representation the client accepts can be produced (answered 406)."""


@dataclass(frozen=True)
class AcceptItem:
    """One entry of an Accept header: media range, parameters (lower-case names) and quality."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    @property
    def part_type(self) -> str:
        """The media type of the parts: ``type`` of a multipart range, else the range itself."""
        if self.media_type == "multipart/related":
            return self.params.get("type", "*/*").lower()
        return self.media_type

    @property
    def transfer_syntax(self) -> str | None:
        """The ``transfer-syntax`` parameter, if any."""
        return self.params.get("transfer-syntax")


def parse_accept(header: str | None) -> list[AcceptItem]:
    """The entries of an Accept header, best quality first (stable for equal qualities)."""
    items: list[AcceptItem] = []
    for entry in re.findall(r'(?:[^,"]|"[^"]*")+', header or ""):
        media, *raw_params = [piece.strip() for piece in re.findall(r'(?:[^;"]|"[^"]*")+', entry)]
        if not media:
            continue
        params: dict[str, str] = {}
        for raw in raw_params:
            name, _, value = raw.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        items.append(AcceptItem(media.lower(), params, quality))
    return sorted(items, key=lambda item: -item.quality)


def instance_syntax(accept: str | None, stored_syntax: str) -> str:
    """The transfer syntax to send an instance in: the first the client accepts that we can produce.

    Raises ``NotAcceptable`` when it accepts none of them.
    """
    items = parse_accept(accept)
    if not items:
        return stored_syntax
    for item in items:
        if item.part_type not in (DICOM, "application/*", "*/*"):
            continue
        wanted = item.transfer_syntax
        if wanted == "*" or (wanted is None and item.part_type == "*/*"):
            return stored_syntax
        wanted = wanted or ExplicitVRLittleEndian  # application/dicom without transfer-syntax (PS3.18 8.7.3.5.2)
        if wanted == stored_syntax or wanted in TRANSCODE_TARGETS:
            return wanted
    raise NotAcceptable(
        f"Las instancias se guardaron en {stored_syntax} y pueden enviarse en {', '.join(TRANSCODE_TARGETS)}; "
        f"pida una de ellas o transfer-syntax=* / instances are stored as {stored_syntax} and can be sent as "
        f"{', '.join(TRANSCODE_TARGETS)}; ask for one of them or transfer-syntax=*"
    )


def transcode(data: bytes, target: str, budget_bytes: int = DECODE_MAX_BYTES) -> bytes:
    """A Part 10 file in another transfer syntax: pixels decoded, then encoded losslessly for ``target``.

    Raises :class:`DecodeBudgetExceeded` when decoding every frame would take more than ``budget_bytes``.
    """
    ds = pydicom.dcmread(io.BytesIO(data))
    if str(ds.file_meta.TransferSyntaxUID) == target:
        return data
    require_decode_budget(ds, budget_bytes, _frame_count(ds))
    if UID(str(ds.file_meta.TransferSyntaxUID)).is_compressed:
        ds.decompress()
    if UID(target).is_compressed:
        ds.compress(target)
    else:
        ds.file_meta.TransferSyntaxUID = target
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


Representation = Literal["native", "stored", "encoded"]


@dataclass(frozen=True)
class FrameChoice:
    """How frames go out: decoded to native pixels, as stored, or encoded anew, and each part's Content-Type."""

    representation: Representation
    part_content_type: str
    part_type: str
    syntax: str = ExplicitVRLittleEndian


def choose_frame_representation(accept: str | None, stored_syntax: str) -> FrameChoice:
    """Pick the frame representation the client prefers among those we can produce."""
    native = FrameChoice("native", f"{OCTET_STREAM}; transfer-syntax={NATIVE}", OCTET_STREAM)
    encapsulated = UID(stored_syntax).is_encapsulated
    media = FRAME_MEDIA_TYPES.get(stored_syntax, (OCTET_STREAM,))
    stored_as_image = FrameChoice("stored", f"{media[0]}; transfer-syntax={stored_syntax}", media[0])
    items = parse_accept(accept)
    if not items or all(item.media_type == "*/*" for item in items):
        return native
    for item in items:
        part, syntax = item.part_type, item.transfer_syntax
        if part == OCTET_STREAM:
            if syntax in (None, NATIVE) or (syntax == "*" and not encapsulated):
                return native
            if encapsulated and syntax in ("*", stored_syntax):
                return FrameChoice("stored", f"{OCTET_STREAM}; transfer-syntax={stored_syntax}", OCTET_STREAM)
        elif part in ("*/*", "image/*") or part in media:
            if encapsulated and syntax in (None, "*", stored_syntax):
                return stored_as_image
            if part == "*/*" and not encapsulated:
                return native
        if (encoded := _encoded_choice(part, syntax)) is not None:
            return encoded
    raise NotAcceptable(
        f"Los cuadros están guardados en {stored_syntax}; acepte {media[0]} o application/octet-stream / "
        f"frames are stored as {stored_syntax}; accept {media[0]} or application/octet-stream"
    )


def _encoded_choice(part: str, syntax: str | None) -> FrameChoice | None:
    """Frames encoded anew for a lossless image type the client names (``image/jp2``, ``image/jls``, RLE)."""
    for target, media in TRANSCODE_TARGETS.items():
        if media != OCTET_STREAM and part in FRAME_MEDIA_TYPES[target] and syntax in (None, "*", target):
            return FrameChoice("encoded", f"{media}; transfer-syntax={target}", media, target)
    return None


def _frame_count(ds: pydicom.Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def frames(data: bytes, numbers: Iterable[int], choice: FrameChoice, budget_bytes: int = DECODE_MAX_BYTES) -> list[bytes]:
    """The requested frames (1-based) of a Part 10 file in the chosen representation.

    Raises :class:`DecodeBudgetExceeded` when the frames to decode would take more than ``budget_bytes``.
    """
    if choice.representation == "encoded":
        data = transcode(data, choice.syntax, budget_bytes)
        choice = FrameChoice("stored", choice.part_content_type, choice.part_type, choice.syntax)
    ds = pydicom.dcmread(io.BytesIO(data))
    syntax = str(ds.file_meta.TransferSyntaxUID)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    wanted = list(numbers)
    if choice.representation == "stored" and UID(syntax).is_encapsulated:
        offsets = None
        if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
            offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        return [
            get_frame(ds.PixelData, number - 1, number_of_frames=count, extended_offsets=offsets)
            for number in wanted
        ]
    bits = int(ds.BitsAllocated)
    if syntax in _SLICEABLE and bits % 8 == 0:
        size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
        pixel_bytes = bytes(ds.PixelData)
        return [pixel_bytes[(number - 1) * size : number * size] for number in wanted]
    require_decode_budget(ds, budget_bytes, len(wanted))
    return [_native_bytes(pixel_array(ds, index=number - 1)) for number in wanted]


def _native_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def new_boundary() -> str:
    """A boundary that never occurs in DICOM data by chance."""
    return f"mdd-{uuid.uuid4().hex}"


def multipart_content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """The Content-Type of a multipart/related answer."""
    syntax = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{part_type}"{syntax}; boundary={boundary}'


def part(boundary: str, content_type: str, body: bytes, location: str | None = None) -> bytes:
    """One part of a multipart/related body (its delimiter, headers and content)."""
    headers = f"--{boundary}\r\nContent-Type: {content_type}\r\n"
    if location:
        headers += f"Content-Location: {location}\r\n"
    return headers.encode() + b"\r\n" + body + b"\r\n"


def closing(boundary: str) -> bytes:
    """The close delimiter of a multipart body."""
    return f"--{boundary}--\r\n".encode()


def multipart_body(boundary: str, parts: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """A whole multipart/related body from (Content-Type, content) pairs."""
    for content_type, body in parts:
        yield part(boundary, content_type, body)
    yield closing(boundary)


RENDERED_TYPES: Final[dict[str, str]] = {"image/jpeg": "JPEG", "image/png": "PNG"}


def choose_rendered_type(accept: str | None) -> str:
    """``image/jpeg`` (the default) or ``image/png``, as the client prefers."""
    for item in parse_accept(accept):
        if item.media_type in RENDERED_TYPES:
            return item.media_type
        if item.media_type in ("*/*", "image/*"):
            return "image/jpeg"
    if not accept:
        return "image/jpeg"
    raise NotAcceptable("Solo image/jpeg o image/png / only image/jpeg or image/png")


def render(data: bytes, media_type: str, budget_bytes: int = DECODE_MAX_BYTES) -> bytes:
    """The instance's first frame for display (VOI window applied, breast bright), 8 bits; raises
    :class:`DecodeBudgetExceeded` when that frame would take more than ``budget_bytes`` decoded."""
    from PIL import Image

    image = to_display(pydicom.dcmread(io.BytesIO(data)), budget_bytes=budget_bytes)
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format=RENDERED_TYPES[media_type])
    return buffer.getvalue()
