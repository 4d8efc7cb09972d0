"""Preprocesamiento de una vista / one-view preprocessing as pure functions.

DICOM dataset -> display image (0..1, breast bright; :mod:`.decoding`) -> oriented (chest wall on
the LEFT edge) -> breast and pectoral masks (:mod:`.segmentation`, any backend) -> masked crop ->
magma colour map -> model input (336 x 224 x 3, 0..1), as the seed did. :func:`derived_files`
encodes the outputs (PNG previews, ``.npy`` tensor). No broker or store code lives here.
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

from shared.dicom_vocabulary import chest_wall_on_left, laterality_from_dataset, projection_from_dataset
from shared.imaging.applicability import MIN_BREAST_AREA_FRACTION, NotEvaluable, header_gates, rendering_gates
from shared.imaging.display import DECODE_MAX_BYTES, has_voi, to_display, to_uint8
from shared.imaging.segmentation import ClassicSegmenter, Segmenter, segment_breast
from shared.synth import STORED_CHEST_WALL_SIDE

Laterality = Literal["R", "L"]
View = Literal["CC", "MLO"]

MODEL_INPUT_ROWS: Final[int] = 336
MODEL_INPUT_COLS: Final[int] = 224
#: Longest side of the crop and magma PNG previews (the model input is made at full resolution).
PREVIEW_MAX_SIDE: Final[int] = 1024
#: Labels of ``mask.png`` (a palette PNG: black, white, grey): background, breast, pectoral muscle.
MASK_LABELS: Final[dict[str, int]] = {"background": 0, "breast": 1, "pectoral": 2}
_MASK_PALETTE: Final[bytes] = bytes([0, 0, 0, 255, 255, 255, 128, 128, 128])
# zlib level 1: previews encode several times faster than at the default level, a little larger.
_PNG_COMPRESS_LEVEL: Final[int] = 1

Flag = Literal["not_mg", "laterality_missing", "view_missing", "breast_area_too_small"]
# The breast whose chest wall is stored on each side (inverse of STORED_CHEST_WALL_SIDE).
_LATERALITY_BY_CHEST_WALL_SIDE: Final[dict[str, Laterality]] = {
    side: lat for lat, side in STORED_CHEST_WALL_SIDE.items()  # type: ignore[misc]
}


@dataclass
class OrientedImage:
    """A view's display image with the chest wall on the left, before segmentation.

    ``laterality`` comes from the tags or, for a mammogram without them, from the image
    (``laterality_from_image``); ``view`` comes from the tags only.
    """

    image: np.ndarray
    laterality: Laterality | None
    view: View | None
    laterality_from_image: bool
    flags: list[Flag] = field(default_factory=list)


@dataclass
class PreprocessedView:
    """Everything the rest of the pipeline needs from one view (oriented frame).

    ``mask`` is the breast as imaged (pectoral muscle included, as the seed); ``pectoral_mask``
    is the muscle alone. ``crop`` is the display image inside ``bbox`` with the background
    outside ``mask`` set to black.
    """

    laterality: Laterality | None
    view: View | None
    mask: np.ndarray
    crop: np.ndarray
    magma: np.ndarray
    model_input: np.ndarray
    breast_area_fraction: float
    bbox: tuple[int, int, int, int]
    flags: list[str] = field(default_factory=list)
    pectoral_mask: np.ndarray | None = None
    laterality_from_image: bool = False
    view_from_image: bool = False
    segmentation_backend: str = "classic"
    not_evaluable: list[NotEvaluable] = field(default_factory=list)
    """Why the model must not score this view (:mod:`shared.imaging.applicability`); empty: it may."""

    @property
    def evaluable(self) -> bool:
        """True when no gate stops the model from scoring this view."""
        return not self.not_evaluable


def view_of(ds: pydicom.Dataset) -> tuple[Laterality | None, View | None]:
    """(laterality, CC or MLO slot) from the tags (:mod:`shared.dicom_vocabulary`); ``None`` where they do not say."""
    laterality = laterality_from_dataset(ds)
    projection = projection_from_dataset(ds)
    return (
        laterality.value if laterality is not None else None,  # type: ignore[return-value]
        projection.view.value if projection is not None else None,
    )


def laterality_from_image(image: np.ndarray) -> Laterality:
    """Laterality of a stored (not yet mirrored) display image, from the side of its chest wall."""
    return _LATERALITY_BY_CHEST_WALL_SIDE["left" if chest_wall_on_left(image) else "right"]


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


def is_mammogram(ds: pydicom.Dataset) -> bool:
    """Whether the dataset says Modality MG."""
    return str(ds.get("Modality", "") or "").strip().upper() == "MG"


def oriented_image(ds: pydicom.Dataset, decode_budget: int = DECODE_MAX_BYTES) -> OrientedImage:
    """Decode ``ds`` (refused past ``decode_budget`` bytes), read laterality and view, and mirror it to
    the chest-wall-left frame.

    A mammogram without a laterality tag gets one from the image (flag ``laterality_missing``
    stays); nothing is guessed for other modalities (flag ``not_mg``).
    """
    flags: list[Flag] = []
    mammogram = is_mammogram(ds)
    if not mammogram:
        flags.append("not_mg")
    laterality, view = view_of(ds)
    if laterality is None:
        flags.append("laterality_missing")
    if view is None:
        flags.append("view_missing")
    display = to_display(ds, budget_bytes=decode_budget)
    guessed = laterality is None and mammogram
    if guessed:
        laterality = laterality_from_image(display)
    return OrientedImage(
        image=orient(display, laterality),
        laterality=laterality,
        view=view,
        laterality_from_image=guessed,
        flags=flags,
    )


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


def magma(image01: np.ndarray) -> np.ndarray:
    """Colour a grey image (0..1 float or uint8) with ``magma``; returns uint8 H x W x 3."""
    grey = np.ascontiguousarray(to_uint8(image01))
    # A palette image converted by Pillow: the same lookup as indexing the table, several times faster.
    indexed = Image.frombuffer("P", (grey.shape[1], grey.shape[0]), grey, "raw", "P", 0, 1)
    indexed.putpalette(_magma_table().tobytes())
    return np.asarray(indexed.convert("RGB"))


def resize_model_input(rgb: np.ndarray) -> np.ndarray:
    """Resize an RGB uint8 image to the model input: float32 (336, 224, 3) in 0..1."""
    resized = Image.fromarray(np.ascontiguousarray(rgb)).resize(
        (MODEL_INPUT_COLS, MODEL_INPUT_ROWS), Image.Resampling.BILINEAR, reducing_gap=2.0
    )
    return np.asarray(resized, dtype=np.float32) * np.float32(1.0 / 255.0)


def preview(image: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    """Shrink a uint8 grey or RGB image so its longest side is at most ``max_side`` (box filter)."""
    rows, cols = image.shape[:2]
    if max(rows, cols) <= max_side:
        return image
    scale = max_side / max(rows, cols)
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(resized)


def magma_png_bytes(grey: np.ndarray) -> bytes:
    """Encode a uint8 grey image as a PNG coloured with ``magma`` (a palette PNG: a third of the work).

    Reading it back as RGB gives exactly :func:`magma` of ``grey``.
    """
    data = np.ascontiguousarray(grey)
    image = Image.frombuffer("P", (data.shape[1], data.shape[0]), data, "raw", "P", 0, 1)
    image.putpalette(_magma_table().tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 grey (H x W) or RGB (H x W x 3) array, or a bool mask, as PNG."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """Serialise an array in NumPy's ``.npy`` format."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def label_mask(mask: np.ndarray, pectoral: np.ndarray | None) -> np.ndarray:
    """uint8 label image of :data:`MASK_LABELS`: breast 1, pectoral muscle 2, background 0."""
    labels = mask.astype(np.uint8) * np.uint8(MASK_LABELS["breast"])
    if pectoral is not None:
        labels[pectoral] = MASK_LABELS["pectoral"]
    return labels


def label_png_bytes(labels: np.ndarray) -> bytes:
    """Encode a label image (values 0..3) as a 2-bit palette PNG; reading it back gives the labels."""
    data = np.ascontiguousarray(labels, dtype=np.uint8)
    image = Image.frombuffer("P", (data.shape[1], data.shape[0]), data, "raw", "P", 0, 1)
    image.putpalette(_MASK_PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", bits=2, compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def derived_files(result: PreprocessedView) -> dict[str, tuple[bytes, str]]:
    """The files stored under ``derived/{study}/{sop}/``: name -> (bytes, content type).

    ``mask.png`` is the full-resolution label mask in the oriented frame (:data:`MASK_LABELS`);
    ``crop.png`` and ``magma.png`` (a palette PNG) are previews at most :data:`PREVIEW_MAX_SIDE`
    pixels long;
    ``input.npy`` is the model input, float32 (336, 224, 3).
    """
    crop_preview = preview(result.crop)
    return {
        "mask.png": (label_png_bytes(label_mask(result.mask, result.pectoral_mask)), "image/png"),
        "crop.png": (png_bytes(crop_preview), "image/png"),
        "magma.png": (magma_png_bytes(crop_preview), "image/png"),
        "input.npy": (npy_bytes(result.model_input), "application/octet-stream"),
    }


def preprocess_view(
    ds: pydicom.Dataset, segmenter: Segmenter | None = None, decode_budget: int = DECODE_MAX_BYTES
) -> PreprocessedView:
    """Run the whole one-view pipeline and collect quality flags (decoding refused past ``decode_budget`` bytes).

    ``segmenter`` defaults to the classic backend. Flags: ``not_mg`` (Modality is not MG),
    ``laterality_missing`` and ``view_missing`` (the tags do not say; for a mammogram both are
    then taken from the image: chest-wall side, and a pectoral muscle means MLO),
    ``breast_area_too_small`` (mask under 5 % of the image). ``not_evaluable`` lists the gates the
    view fails (:func:`shared.imaging.applicability.header_gates` and ``rendering_gates``).
    """
    segmenter = segmenter or ClassicSegmenter()
    gates = header_gates(ds)
    prepared = oriented_image(ds, decode_budget)
    flags: list[str] = list(prepared.flags)
    image = prepared.image
    segmentation = segmenter.segment(image, prepared.view)
    mask = segmentation.breast_mask
    view = prepared.view
    view_guessed = view is None and is_mammogram(ds)
    if view_guessed:
        view = "MLO" if segmentation.pectoral_mask.any() else "CC"
    area = float(np.count_nonzero(mask)) / mask.size
    if area < MIN_BREAST_AREA_FRACTION:
        flags.append("breast_area_too_small")
    gates += [gate for gate in rendering_gates(image, mask, windowed=has_voi(ds)) if gate not in gates]
    cropped, bbox = crop_to_mask(image, mask)
    crop = to_uint8(cropped)
    inside = mask[bbox[0] : bbox[1], bbox[2] : bbox[3]]
    if mask.any() and not inside.all():
        # As the seed: the image is masked before cropping, so labels and markers go black.
        crop = np.where(inside, crop, np.uint8(0))
    coloured = magma(crop)
    return PreprocessedView(
        laterality=prepared.laterality,
        view=view,
        mask=mask,
        crop=crop,
        magma=coloured,
        model_input=resize_model_input(coloured),
        breast_area_fraction=area,
        bbox=bbox,
        flags=flags,
        pectoral_mask=segmentation.pectoral_mask,
        laterality_from_image=prepared.laterality_from_image,
        view_from_image=view_guessed,
        segmentation_backend=segmenter.name,
        not_evaluable=gates,
    )


__all__ = [
    "MASK_LABELS",
    "MODEL_INPUT_COLS",
    "MODEL_INPUT_ROWS",
    "PREVIEW_MAX_SIDE",
    "OrientedImage",
    "PreprocessedView",
    "chest_wall_on_left",
    "crop_to_mask",
    "derived_files",
    "is_mammogram",
    "label_mask",
    "label_png_bytes",
    "laterality_from_image",
    "magma",
    "magma_png_bytes",
    "npy_bytes",
    "orient",
    "oriented_image",
    "png_bytes",
    "preprocess_view",
    "preview",
    "resize_model_input",
    "segment_breast",
    "to_display",
    "to_uint8",
    "view_of",
]
