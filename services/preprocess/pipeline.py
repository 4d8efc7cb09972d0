"""Preprocesamiento de una vista / one-view preprocessing as pure functions.

DICOM dataset -> display image (0..1, breast bright) -> oriented (chest wall on the LEFT
edge) -> breast mask -> crop -> magma colour map -> model input (336 x 224 x 3, 0..1).
No broker or store code lives here.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import pydicom
from matplotlib import colormaps
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from scipy import ndimage
from skimage.filters import threshold_otsu

from shared.synth import STORED_CHEST_WALL_SIDE

Laterality = Literal["R", "L"]
View = Literal["CC", "MLO"]

MODEL_INPUT_ROWS: Final[int] = 336
MODEL_INPUT_COLS: Final[int] = 224
#: Longest side of the working copy used to segment; the mask is upsampled afterwards.
SEGMENTATION_MAX_SIDE: Final[int] = 512
#: Below this fraction of the image the breast is flagged as missing or badly exposed.
MIN_BREAST_AREA_FRACTION: Final[float] = 0.05
# Gaussian noise split in two scores 2/pi (~0.64); two separated modes score near 1.
_SPLIT_EFFECTIVENESS: Final[float] = 0.85

_VIEW_ALIASES: Final[dict[str, View]] = {
    "CC": "CC", "XCC": "CC", "XCCL": "CC", "XCCM": "CC", "FB": "CC",
    "MLO": "MLO", "ML": "MLO", "LM": "MLO", "LMO": "MLO", "SIO": "MLO",
}
# ViewCodeSequence codes (SNOMED CT and legacy SNOMED RT) for the two standard views.
_VIEW_CODES: Final[dict[str, View]] = {
    "399162004": "CC", "R-10242": "CC",
    "399368009": "MLO", "R-10226": "MLO", "399260004": "MLO", "R-10224": "MLO",
}


@dataclass
class PreprocessedView:
    """Everything the rest of the pipeline needs from one view (oriented frame)."""

    laterality: Laterality | None
    view: View | None
    mask: np.ndarray
    crop: np.ndarray
    magma: np.ndarray
    model_input: np.ndarray
    breast_area_fraction: float
    bbox: tuple[int, int, int, int]
    flags: list[str] = field(default_factory=list)


def to_display(ds: pydicom.Dataset) -> np.ndarray:
    """Return the image as float32 in 0..1 with the breast bright.

    Applies the modality LUT, then the VOI LUT or window (falling back to min/max when the
    dataset has none or it is degenerate), then inverts MONOCHROME1.
    """
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float32, copy=False)
    image: np.ndarray | None = None
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        windowed = np.asarray(apply_voi_lut(values, ds), dtype=np.float32)
        # Probing the far ends gives the output range of the VOI transform.
        lo, hi = np.asarray(apply_voi_lut(np.array([-1e9, 1e9], dtype=np.float64), ds), dtype=np.float64)
        if hi > lo:
            image = (windowed - np.float32(lo)) * np.float32(1.0 / (hi - lo))
            if float(image.max()) - float(image.min()) < 1e-3:
                image = None
    if image is None:
        lo_v, hi_v = float(values.min()), float(values.max())
        image = (values - np.float32(lo_v)) * np.float32(1.0 / max(hi_v - lo_v, 1e-6))
    np.clip(image, 0.0, 1.0, out=image)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = 1.0 - image
    return image.astype(np.float32, copy=False)


def _laterality_of(ds: pydicom.Dataset) -> Laterality | None:
    for keyword in ("ImageLaterality", "Laterality", "FrameLaterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("R", "L"):
            return value  # type: ignore[return-value]
    return None


def _view_of(ds: pydicom.Dataset) -> View | None:
    position = str(ds.get("ViewPosition", "") or "").strip().upper()
    if position in _VIEW_ALIASES:
        return _VIEW_ALIASES[position]
    for item in ds.get("ViewCodeSequence", None) or []:
        code = str(item.get("CodeValue", "") or "").strip()
        if code in _VIEW_CODES:
            return _VIEW_CODES[code]
        meaning = str(item.get("CodeMeaning", "") or "").lower()
        if "cranio" in meaning:
            return "CC"
        if "lateral" in meaning:
            return "MLO"
    return None


def view_of(ds: pydicom.Dataset) -> tuple[Laterality | None, View | None]:
    """Read (laterality, view) from ImageLaterality/Laterality and ViewPosition/ViewCodeSequence.

    ML, LM and other lateral projections count as ``"MLO"``; unknown values give ``None``.
    """
    return _laterality_of(ds), _view_of(ds)


def chest_wall_on_left(image: np.ndarray) -> bool:
    """Guess from the image whether the chest wall is on the left edge (tissue mass there)."""
    half = image.shape[1] // 2
    data = image.astype(np.float32, copy=False)
    return float(data[:, :half].mean()) >= float(data[:, image.shape[1] - half :].mean())


def orient(image: np.ndarray, laterality: str | None) -> np.ndarray:
    """Mirror ``image`` so the chest wall is on the LEFT edge, whatever the breast.

    Uses the stored convention of :data:`shared.synth.STORED_CHEST_WALL_SIDE` (right breasts
    have the chest wall on the right, so they are flipped); when the laterality is unknown
    the side is guessed from the image. Works for masks too.
    """
    if laterality in STORED_CHEST_WALL_SIDE:
        flip = STORED_CHEST_WALL_SIDE[laterality] == "right"
    else:
        flip = not chest_wall_on_left(image)
    return np.ascontiguousarray(image[:, ::-1]) if flip else image


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Downsample by averaging ``factor x factor`` blocks (edges padded by replication)."""
    if factor <= 1:
        return image.astype(np.float32, copy=False)
    rows, cols = image.shape
    pad_r, pad_c = (-rows) % factor, (-cols) % factor
    padded = np.pad(image, ((0, pad_r), (0, pad_c)), mode="edge") if pad_r or pad_c else image
    shape = (padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return padded.reshape(shape).mean(axis=(1, 3), dtype=np.float32)


def _upsample_mask(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a mask to ``shape`` (pixel centres aligned)."""
    rows, cols = shape
    r_idx = np.minimum(((np.arange(rows) + 0.5) * small.shape[0] / rows).astype(np.int64), small.shape[0] - 1)
    c_idx = np.minimum(((np.arange(cols) + 0.5) * small.shape[1] / cols).astype(np.int64), small.shape[1] - 1)
    return small[r_idx[:, None], c_idx[None, :]]


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx) <= radius * radius


def _background_threshold(image: np.ndarray) -> float:
    """Otsu threshold pushed down until only background lies below it.

    A single Otsu split often separates fat from dense tissue or pectoral muscle rather than
    background from breast, because fat and background together outweigh the bright classes.
    So the class below the threshold is split again while it is clearly two-moded
    (Otsu effectiveness >= ``_SPLIT_EFFECTIVENESS``); pure background noise never is.
    """
    values = image.ravel()
    threshold = float(threshold_otsu(values))
    for _ in range(3):
        lower = values[values <= threshold]
        if lower.size < 64 or float(np.ptp(lower)) < 1e-3:
            break
        candidate = float(threshold_otsu(lower))
        below = lower <= candidate
        weight = float(below.mean())
        if weight in (0.0, 1.0):
            break
        gap = float(lower[below].mean()) - float(lower[~below].mean())
        effectiveness = weight * (1.0 - weight) * gap * gap / max(float(lower.var()), 1e-12)
        if effectiveness < _SPLIT_EFFECTIVENESS:
            break
        threshold = candidate
    return threshold


def segment_breast(image: np.ndarray) -> np.ndarray:
    """Return the boolean breast mask of a display image (bright breast on dark background).

    Otsu threshold (refined towards the background), largest connected component, hole
    filling, then opening/closing with a disk scaled to the image. Large images are
    segmented on a block-averaged copy and the mask is upsampled back.
    """
    factor = max(1, int(np.ceil(max(image.shape) / SEGMENTATION_MAX_SIDE)))
    small = ndimage.gaussian_filter(_block_mean(image, factor), 1.0)
    if float(small.max()) - float(small.min()) < 1e-6:
        return np.zeros(image.shape, dtype=bool)
    mask = small > _background_threshold(small)
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(sizes.argmax())
    mask = ndimage.binary_fill_holes(mask)
    radius = max(1, round(min(small.shape) * 0.01))
    structure = _disk(radius)
    # Pad so closing does not glue the breast to the border or lose border-touching tissue.
    padded = np.pad(mask, radius + 1, mode="edge")
    padded = ndimage.binary_opening(padded, structure)
    padded = ndimage.binary_closing(padded, structure)
    mask = ndimage.binary_fill_holes(padded[radius + 1 : -radius - 1, radius + 1 : -radius - 1])
    return _upsample_mask(mask, image.shape) if factor > 1 else mask


def crop_to_mask(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Crop ``image`` to the bounding box of ``mask``; bbox is (row0, row1, col0, col1), ends exclusive.

    An empty mask keeps the whole image.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        bbox = (0, image.shape[0], 0, image.shape[1])
    else:
        bbox = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    return image[bbox[0] : bbox[1], bbox[2] : bbox[3]], bbox


@functools.cache
def _magma_table() -> np.ndarray:
    """256 x 3 uint8 lookup table of matplotlib's ``magma`` colour map."""
    rgba = colormaps["magma"](np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255.0).astype(np.uint8)


def to_uint8(image01: np.ndarray) -> np.ndarray:
    """Quantise a 0..1 image to uint8 (uint8 input is returned unchanged)."""
    if image01.dtype == np.uint8:
        return image01
    return np.rint(np.clip(image01, 0.0, 1.0) * 255.0).astype(np.uint8)


def magma(image01: np.ndarray) -> np.ndarray:
    """Colour a grey image (0..1 float or uint8) with ``magma``; returns uint8 H x W x 3."""
    return _magma_table()[to_uint8(image01)]


def resize_model_input(rgb: np.ndarray) -> np.ndarray:
    """Resize an RGB uint8 image to the model input: float32 (336, 224, 3) in 0..1."""
    resized = Image.fromarray(np.ascontiguousarray(rgb)).resize(
        (MODEL_INPUT_COLS, MODEL_INPUT_ROWS), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32) * np.float32(1.0 / 255.0)


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 grey (H x W) or RGB (H x W x 3) array, or a bool mask, as PNG."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def preprocess_view(ds: pydicom.Dataset) -> PreprocessedView:
    """Run the whole one-view pipeline and collect quality flags.

    Flags: ``not_mg`` (Modality is not MG), ``laterality_missing``, ``view_missing``,
    ``breast_area_too_small`` (mask under 5 % of the image).
    """
    flags: list[str] = []
    if str(ds.get("Modality", "") or "").upper() != "MG":
        flags.append("not_mg")
    laterality, view = view_of(ds)
    if laterality is None:
        flags.append("laterality_missing")
    if view is None:
        flags.append("view_missing")

    image = orient(to_display(ds), laterality)
    mask = segment_breast(image)
    area = float(mask.mean())
    if area < MIN_BREAST_AREA_FRACTION:
        flags.append("breast_area_too_small")
    cropped, bbox = crop_to_mask(image, mask)
    crop = to_uint8(cropped)
    coloured = magma(crop)
    return PreprocessedView(
        laterality=laterality,
        view=view,
        mask=mask,
        crop=crop,
        magma=coloured,
        model_input=resize_model_input(coloured),
        breast_area_fraction=area,
        bbox=bbox,
        flags=flags,
    )


__all__ = [
    "MODEL_INPUT_COLS",
    "MODEL_INPUT_ROWS",
    "PreprocessedView",
    "chest_wall_on_left",
    "crop_to_mask",
    "magma",
    "orient",
    "png_bytes",
    "preprocess_view",
    "resize_model_input",
    "segment_breast",
    "to_display",
    "to_uint8",
    "view_of",
]
