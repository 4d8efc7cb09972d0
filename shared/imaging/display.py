"""DICOM pixels to a display image: the one decoding every service and offline tool uses.

Pixel data in every transfer syntax the ingest accepts are decoded by pydicom with its plugins
(pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls); of a multi-frame object only the
first frame is decoded. The grey scale then goes through the modality LUT, the VOI LUT or window
(or a percentile window when there is none, or when the caller wants the window-free rendering the
model reads) and MONOCHROME1 inversion, so the breast always comes out bright. The preprocessing
pipeline, training, the results mosaic and WADO-RS ``/rendered`` all call :func:`to_display` or
:func:`display_values`, so a view looks the same in each of them. The vocabulary (For Processing,
VOI, inversion, views, laterality) lives in :mod:`shared.dicom_vocabulary`.
"""

from __future__ import annotations

import warnings
from typing import Final

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.uid import UID

from shared.dicom_vocabulary import has_voi, is_for_processing, is_inverted
from shared.settings import Settings

#: Digital Mammography X-Ray Image Storage - For Processing.
MG_FOR_PROCESSING: Final[str] = "1.2.840.10008.5.1.4.1.1.1.2.1"
#: Digital X-Ray Image Storage - For Processing.
DX_FOR_PROCESSING: Final[str] = "1.2.840.10008.5.1.4.1.1.1.1.1"
#: Percentiles of the image that become black and white when there is no usable window.
WINDOW_PERCENTILES: Final[tuple[float, float]] = (0.5, 99.5)
# Percentiles are taken on every 4th row and column: plenty of pixels, a sixteenth of the work.
_PERCENTILE_STEP: Final[int] = 4
# A window that leaves less than this spread of grey levels over the image is ignored.
_MIN_DISPLAY_SPREAD: Final[float] = 1e-3


class DecodingError(ValueError):
    """The pixel data cannot be decoded (unknown transfer syntax or a missing decoder plugin)."""


class DecodeBudgetExceeded(DecodingError):
    """Decoding would take more memory than the budget (``MDD_DECODE_MAX_BYTES``): refused before decoding."""


#: The decode budget with ``MDD_DECODE_MAX_BYTES`` at its default.
DECODE_MAX_BYTES: Final[int] = Settings.model_construct().decode_max_bytes


def decoded_bytes(ds: pydicom.Dataset, frames: int = 1) -> int:
    """The memory ``frames`` decoded frames of ``ds`` take, from its header alone (0 when it lacks dimensions)."""
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16) or 16)
    except (AttributeError, TypeError, ValueError):
        return 0
    return max(rows, 0) * max(columns, 0) * max(samples, 1) * max(1, (bits + 7) // 8) * max(frames, 1)


def require_decode_budget(ds: pydicom.Dataset, budget_bytes: int, frames: int = 1) -> None:
    """Raise :class:`DecodeBudgetExceeded`, with a reason, when decoding ``frames`` frames would pass the budget."""
    size = decoded_bytes(ds, frames)
    if size > budget_bytes:
        raise DecodeBudgetExceeded(
            f"Decodificar {ds.get('Rows')} x {ds.get('Columns')} píxeles ({frames} cuadro/s) ocuparía {size} bytes; el "
            f"máximo es {budget_bytes} (MDD_DECODE_MAX_BYTES) / decoding {ds.get('Rows')} x {ds.get('Columns')} pixels "
            f"({frames} frame/s) would take {size} bytes, at most {budget_bytes}"
        )


def _frames(ds: pydicom.Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def decode_pixels(ds: pydicom.Dataset, budget_bytes: int = DECODE_MAX_BYTES) -> np.ndarray:
    """Return the stored pixel values of the first frame as a 2-D array.

    Colour images (secondary captures) are reduced to grey by averaging their channels.
    Raises :class:`DecodeBudgetExceeded` before decoding a frame larger than ``budget_bytes``, and
    :class:`DecodingError` with the transfer syntax and what to install.
    """
    require_decode_budget(ds, budget_bytes)
    syntax = UID(str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""))
    try:
        # Only the first frame of a multi-frame object is decoded: memory stays bounded by one frame.
        pixels = pixel_array(ds, index=0) if _frames(ds) > 1 else ds.pixel_array
    except Exception as exc:  # pydicom raises several types, one per plugin that failed
        name = syntax.name if syntax else "desconocida / unknown"
        raise DecodingError(
            f"No se pudo decodificar la imagen (sintaxis {name}): {exc}. Verifique que estén instalados "
            "pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle y pyjpegls / "
            f"could not decode the pixel data (transfer syntax {name}); check that those decoders are installed."
        ) from exc
    return first_grey_frame(ds, pixels)


def first_grey_frame(ds: pydicom.Dataset, pixels: np.ndarray) -> np.ndarray:
    """The first frame of decoded pixels as one grey 2-D array (colour channels averaged)."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples > 1:
        if pixels.ndim == 4:
            pixels = pixels[0]
        return pixels.mean(axis=-1, dtype=np.float32)
    if pixels.ndim == 3:
        pixels = pixels[0]
    if pixels.ndim != 2:
        raise DecodingError(f"Forma de píxeles inesperada / unexpected pixel array shape {pixels.shape}")
    return pixels


def _percentile_window(values: np.ndarray) -> tuple[float, float]:
    """Grey levels at :data:`WINDOW_PERCENTILES` of ``values`` (falls back to min/max)."""
    sample = values[::_PERCENTILE_STEP, ::_PERCENTILE_STEP] if values.ndim == 2 else values
    lo, hi = (float(v) for v in np.percentile(sample, WINDOW_PERCENTILES))
    if hi - lo <= 0:
        lo, hi = float(values.min()), float(values.max())
    return lo, hi


def _display_transform(ds: pydicom.Dataset, stored: np.ndarray, image: np.ndarray, use_window: bool) -> np.ndarray:
    """Map stored values to display values 0..1 (breast bright), as float32.

    ``stored`` are the values to transform (a lookup domain or the whole image); ``image``
    is the image itself, used for percentile windows.
    """
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    display: np.ndarray | None = None
    if use_window and has_voi(ds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if ds.get("VOILUTSequence"):
                first, last = _lut_domain(ds)
                windowed = apply_voi_lut(np.clip(np.rint(values), first, last).astype(np.int64), ds)
                outputs = apply_voi_lut(np.arange(first, last + 1, dtype=np.int64), ds)
                lo, hi = float(np.min(outputs)), float(np.max(outputs))
            else:
                windowed = apply_voi_lut(values, ds)
                # Probing far beyond any stored value gives the output range of the window.
                lo, hi = (float(v) for v in apply_voi_lut(np.array([-1e12, 1e12]), ds))
        if hi > lo:
            display = (np.asarray(windowed, dtype=np.float64) - lo) / (hi - lo)
            if float(display.max()) - float(display.min()) < _MIN_DISPLAY_SPREAD:
                display = None
    if display is None:
        if is_for_processing(ds) and str(ds.get("PixelIntensityRelationship", "") or "").upper() == "LIN":
            # Raw detector signal is proportional to exposure; its logarithm follows tissue attenuation.
            values = np.log1p(np.maximum(values, 0.0))
        image_values = values if stored is image else _lookup(values, stored, image)
        lo, hi = _percentile_window(image_values)
        display = (values - lo) / max(hi - lo, 1e-12)
    np.clip(display, 0.0, 1.0, out=display)
    if is_inverted(ds):
        display = 1.0 - display
    return display.astype(np.float32)


def _lut_domain(ds: pydicom.Dataset) -> tuple[int, int]:
    """First and last input value mapped by the first VOI LUT (LUT Descriptor)."""
    entries, first, _ = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
    return first, first + (entries or 2**16) - 1


def _lookup(table: np.ndarray, domain: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Values of ``table`` (defined on the integer ``domain``) at a sample of ``image``'s pixels."""
    sample = image[::_PERCENTILE_STEP, ::_PERCENTILE_STEP]
    return table[sample.astype(np.int64) - int(domain[0])]


def display_values(ds: pydicom.Dataset, stored: np.ndarray, *, use_window: bool = True) -> np.ndarray:
    """Stored grey values of ``ds`` (the whole frame or a subsample of it) as float32 0..1, breast bright.

    Modality LUT, then the VOI LUT or window (``use_window``, the default: what a reader sees);
    images without a usable one, and every image when ``use_window`` is False, get a percentile
    window (:data:`WINDOW_PERCENTILES`) instead, after a logarithm when they are For Processing
    with a linear pixel intensity relationship. MONOCHROME1 is inverted. Integer images go
    through a lookup table built once over their range of stored values, which is much faster
    than transforming every pixel.
    """
    if stored.dtype.kind in "iu" and stored.dtype.itemsize <= 2:
        lo, hi = int(stored.min()), int(stored.max())
        domain = np.arange(lo, hi + 1, dtype=np.int64)
        table = _display_transform(ds, domain, stored, use_window)
        if lo >= 0:
            if lo > 0:
                table = np.concatenate([np.zeros(lo, dtype=np.float32), table])
            return table[stored]
        return table[stored.astype(np.int32) - lo]
    values = stored.astype(np.float64)
    return _display_transform(ds, values, values, use_window)


def to_display(
    ds: pydicom.Dataset, *, use_window: bool = True, stored: np.ndarray | None = None, budget_bytes: int = DECODE_MAX_BYTES
) -> np.ndarray:
    """The image's first frame as float32 in 0..1 with the breast bright (see :func:`display_values`);
    ``stored`` skips decoding when the pixels are already at hand; ``budget_bytes`` bounds decoding."""
    return display_values(ds, decode_pixels(ds, budget_bytes) if stored is None else stored, use_window=use_window)


def to_uint8(image01: np.ndarray) -> np.ndarray:
    """Quantise a 0..1 image to uint8, rounded (uint8 input is returned unchanged)."""
    if image01.dtype == np.uint8:
        return image01
    scaled = np.multiply(image01, np.float32(255.0), dtype=np.float32)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    scaled += np.float32(0.5)
    return scaled.astype(np.uint8)


__all__ = [
    "DX_FOR_PROCESSING",
    "MG_FOR_PROCESSING",
    "WINDOW_PERCENTILES",
    "DECODE_MAX_BYTES",
    "DecodeBudgetExceeded",
    "DecodingError",
    "decode_pixels",
    "decoded_bytes",
    "display_values",
    "first_grey_frame",
    "has_voi",
    "is_for_processing",
    "require_decode_budget",
    "to_display",
    "to_uint8",
]
