"""Segmentación de la mama / breast segmentation behind one small interface.

Every backend takes the display image (float 0..1, breast bright, chest wall on the LEFT edge,
as :func:`shared.imaging.pipeline.orient` leaves it) and returns a
:class:`SegmentationResult`. ``classic`` (the default) is the seed's recipe: threshold, largest
component, hole filling, opening and closing, plus pectoral muscle detection on MLO views.
``sam`` (:mod:`shared.imaging.sam`) refines that mask with Segment Anything.

Like the seed, the breast mask is the whole breast as imaged, pectoral muscle included (the model
sees the muscle); the pectoral mask is reported apart, and ``tissue_mask`` is the breast without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

if TYPE_CHECKING:
    from shared.settings import Settings

#: Longest side of the working copy used to segment; masks are upsampled afterwards.
SEGMENTATION_MAX_SIDE: Final[int] = 512
# Gaussian noise split in two scores 2/pi (~0.64); two separated modes score near 1.
_SPLIT_EFFECTIVENESS: Final[float] = 0.85
# Pectoral search: intercepts of the muscle edge on the top edge (fraction of the width) and on
# the chest wall (fraction of the height; above 1 the edge leaves through the bottom).
_PECTORAL_TOP_RANGE: Final[tuple[float, float]] = (0.05, 0.75)
_PECTORAL_SIDE_RANGE: Final[tuple[float, float]] = (0.12, 1.5)
_PECTORAL_COARSE_STEPS: Final[int] = 28
_PECTORAL_BAND: Final[float] = 0.03  # width of the bands either side of the edge, fraction of the width
# The muscle lies inside the body outline: a candidate triangle must be this much inside the mask.
_PECTORAL_MIN_COVERAGE: Final[float] = 0.9
# Edge contrast (in standard deviations of the breast) needed to accept a muscle when the view
# is unknown; a known MLO view only needs a brighter muscle than the tissue next to it.
_PECTORAL_MIN_CONTRAST_UNKNOWN_VIEW: Final[float] = 0.6
_PECTORAL_MIN_CONTRAST_MLO: Final[float] = 0.2


@dataclass(frozen=True)
class SegmentationResult:
    """Masks of one oriented view, both boolean and the image's shape.

    ``breast_mask`` is the whole breast as imaged, pectoral muscle included; ``pectoral_mask``
    is the muscle (empty on CC views or when none is found), always inside ``breast_mask``.
    """

    breast_mask: np.ndarray
    pectoral_mask: np.ndarray

    @property
    def tissue_mask(self) -> np.ndarray:
        """Breast tissue without the pectoral muscle."""
        return self.breast_mask & ~self.pectoral_mask


class Segmenter(Protocol):
    """A segmentation backend (``classic`` or ``sam``)."""

    name: str

    def segment(self, image01: np.ndarray, view: str | None) -> SegmentationResult:
        """Segment an oriented display image; ``view`` is ``"CC"``, ``"MLO"`` or unknown (``None``)."""
        ...


@dataclass(frozen=True)
class PectoralEdge:
    """Straight pectoral edge ``(c - o) / top + (r - o) / side = 1`` in pixel coordinates.

    ``top`` is where the edge meets the top row, ``side`` where it meets the chest-wall column
    (past the bottom when the edge leaves through it); ``contrast`` is the brightness step across
    the edge in standard deviations of the breast.
    """

    top: float
    side: float
    contrast: float
    offset: float = 0.0

    def scaled(self, factor: int) -> PectoralEdge:
        """The same edge on an image ``factor`` times larger (block-averaged working copy)."""
        return PectoralEdge(self.top * factor, self.side * factor, self.contrast, (factor - 1) / 2.0)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean triangle between the edge and the top-left corner."""
        rows = np.arange(shape[0], dtype=np.float64)
        limit = self.offset + self.top * (1.0 - (rows - self.offset) / self.side)
        return np.arange(shape[1], dtype=np.float64)[None, :] < limit[:, None]


# --- breast ----------------------------------------------------------------------------------


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Downsample by averaging ``factor x factor`` blocks (edges padded by replication)."""
    if factor <= 1:
        return image.astype(np.float32, copy=False)
    rows, cols = image.shape
    pad_r, pad_c = (-rows) % factor, (-cols) % factor
    padded = np.pad(image, ((0, pad_r), (0, pad_c)), mode="edge") if pad_r or pad_c else image
    shape = (padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return padded.reshape(shape).mean(axis=(1, 3), dtype=np.float32)


def upsample_mask(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a mask to ``shape`` (pixel centres aligned)."""
    rows, cols = shape
    r_idx = np.minimum(((np.arange(rows) + 0.5) * small.shape[0] / rows).astype(np.int64), small.shape[0] - 1)
    c_idx = np.minimum(((np.arange(cols) + 0.5) * small.shape[1] / cols).astype(np.int64), small.shape[1] - 1)
    return small[r_idx[:, None], c_idx[None, :]]


def _expand_blocks(small: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Undo :func:`_block_mean` for a mask: every working pixel back to its ``factor x factor`` block."""
    if factor <= 1:
        return small
    return np.repeat(np.repeat(small, factor, axis=0), factor, axis=1)[: shape[0], : shape[1]]


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx) <= radius * radius


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a boolean mask: background regions that do not reach the image border.

    Same result as ``scipy.ndimage.binary_fill_holes`` with its default structure, by labelling
    the background once instead of growing it pixel by pixel.
    """
    labels, count = ndimage.label(~mask)
    if count == 0:
        return mask.copy()
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    outside = np.zeros(count + 1, dtype=bool)
    outside[border] = True
    outside[0] = False
    return ~outside[labels]


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


def working_copy(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Block-averaged, lightly smoothed copy with the longest side at most :data:`SEGMENTATION_MAX_SIDE`."""
    factor = max(1, int(np.ceil(max(image.shape) / SEGMENTATION_MAX_SIDE)))
    return ndimage.gaussian_filter(_block_mean(image, factor), 1.0), factor


def _breast_mask_small(small: np.ndarray) -> np.ndarray:
    """Breast mask of the working copy: threshold, largest component, holes, opening, closing."""
    if float(small.max()) - float(small.min()) < 1e-6:
        return np.zeros(small.shape, dtype=bool)
    mask = small > _background_threshold(small)
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(small.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = fill_holes(labels == int(sizes.argmax()))
    radius = max(1, round(min(small.shape) * 0.01))
    structure = _disk(radius)
    # Pad so closing does not glue the breast to the border or lose border-touching tissue.
    padded = np.pad(mask, radius + 1, mode="edge")
    padded = ndimage.binary_opening(padded, structure)
    padded = ndimage.binary_closing(padded, structure)
    return fill_holes(padded[radius + 1 : -radius - 1, radius + 1 : -radius - 1])


def segment_breast(image: np.ndarray) -> np.ndarray:
    """Return the boolean breast mask of a display image (bright breast on dark background).

    Otsu threshold (refined towards the background), largest connected component, hole
    filling, then opening/closing with a disk scaled to the image. Large images are
    segmented on a block-averaged copy and the mask is upsampled back.
    """
    small, factor = working_copy(image)
    return _expand_blocks(_breast_mask_small(small), factor, image.shape)


# --- pectoral muscle ---------------------------------------------------------------------------


def _edge_scores(prefix_values: np.ndarray, prefix_counts: np.ndarray, tops: np.ndarray, sides: np.ndarray, band: int) -> np.ndarray:
    """Contrast across each candidate edge (``tops[k]``, ``sides[k]``); ``-inf`` where not plausible.

    Works row by row on prefix sums: the band just inside the edge against the band just outside.
    A candidate must leave its triangle inside the body outline and have tissue on both sides.
    """
    rows, width = prefix_values.shape[0], prefix_values.shape[1] - 1
    x = tops[:, None] * (1.0 - np.arange(rows, dtype=np.float32)[None, :] / sides[:, None])
    valid = x >= 1.0
    edge = np.clip(np.rint(x).astype(np.int64), 0, width)
    # Flat indices into the prefix arrays (one row of width + 1 entries per image row).
    base = (np.arange(rows, dtype=np.int64) * (width + 1))[None, :]
    at_edge = base + edge
    at_lo = base + np.clip(edge - band, 0, width)
    at_hi = base + np.clip(edge + band, 0, width)
    flat_values, flat_counts = prefix_values.ravel(), prefix_counts.ravel()

    def summed(flat: np.ndarray, index: np.ndarray) -> np.ndarray:
        return np.where(valid, flat[index], 0.0).sum(axis=1)

    values_edge, counts_edge = summed(flat_values, at_edge), summed(flat_counts, at_edge)
    n_in = counts_edge - summed(flat_counts, at_lo)
    n_out = summed(flat_counts, at_hi) - counts_edge
    mean_in = (values_edge - summed(flat_values, at_lo)) / np.maximum(n_in, 1.0)
    mean_out = (summed(flat_values, at_hi) - values_edge) / np.maximum(n_out, 1.0)
    coverage = counts_edge / np.maximum(np.where(valid, edge, 0).sum(axis=1), 1)
    plausible = (n_in >= 0.1 * band * rows) & (n_out >= 0.25 * n_in) & (coverage >= _PECTORAL_MIN_COVERAGE)
    return np.where(plausible, mean_in - mean_out, -np.inf)


def find_pectoral_edge(small: np.ndarray, mask: np.ndarray) -> PectoralEdge | None:
    """Best straight pectoral edge in the upper chest-wall corner of an oriented working copy.

    Searches the edge's two intercepts, coarse then fine, for the largest brightness step between
    narrow bands either side of it, among triangles that lie inside the body outline.
    """
    rows, cols = small.shape
    if not mask.any():
        return None
    values = np.where(mask, small, 0.0).astype(np.float64)
    zero = np.zeros((rows, 1))
    prefix_values = np.concatenate([zero, np.cumsum(values, axis=1)], axis=1)
    prefix_counts = np.concatenate([zero, np.cumsum(mask, axis=1, dtype=np.float64)], axis=1)
    band = max(2, round(_PECTORAL_BAND * cols))

    def search(top_axis: np.ndarray, side_axis: np.ndarray) -> tuple[float, float, float]:
        tops, sides = (grid.ravel() for grid in np.meshgrid(top_axis, side_axis, indexing="ij"))
        contrast = _edge_scores(prefix_values, prefix_counts, tops, sides, band)
        best = int(np.argmax(contrast))
        return float(tops[best]), float(sides[best]), float(contrast[best])

    top_lo, top_hi = (f * cols for f in _PECTORAL_TOP_RANGE)
    side_lo, side_hi = (f * rows for f in _PECTORAL_SIDE_RANGE)
    top_axis = np.linspace(top_lo, top_hi, _PECTORAL_COARSE_STEPS)
    side_axis = np.linspace(side_lo, side_hi, _PECTORAL_COARSE_STEPS)
    top, side, contrast = search(top_axis, side_axis)
    if not np.isfinite(contrast):
        return None
    step_top, step_side = top_axis[1] - top_axis[0], side_axis[1] - side_axis[0]
    # Refine around the best candidate, halving the step down to one pixel.
    while step_top > 0.5 or step_side > 0.5:
        step_top, step_side = max(step_top / 2, 0.5), max(step_side / 2, 0.5)
        offsets = np.arange(-2, 3, dtype=np.float64)
        top, side, contrast = search(
            np.clip(top + offsets * step_top, top_lo, top_hi), np.clip(side + offsets * step_side, side_lo, side_hi)
        )
    spread = float(small[mask].std())
    return PectoralEdge(top=top, side=side, contrast=contrast / max(spread, 1e-6))


def pectoral_threshold(view: str | None) -> float | None:
    """Edge contrast needed to accept a muscle for a view; ``None`` means no search (CC views)."""
    if view == "CC":
        return None
    return _PECTORAL_MIN_CONTRAST_MLO if view == "MLO" else _PECTORAL_MIN_CONTRAST_UNKNOWN_VIEW


# --- backends --------------------------------------------------------------------------------


class ClassicSegmenter:
    """Threshold → largest component → holes → opening/closing, plus pectoral edge on MLO views."""

    name = "classic"

    def segment(self, image01: np.ndarray, view: str | None) -> SegmentationResult:
        """Segment an oriented display image (see the module docstring)."""
        small, factor = working_copy(image01)
        small_mask = _breast_mask_small(small)
        breast = _expand_blocks(small_mask, factor, image01.shape)
        pectoral = np.zeros(image01.shape, dtype=bool)
        threshold = pectoral_threshold(view)
        if threshold is not None:
            edge = find_pectoral_edge(small, small_mask)
            if edge is not None and edge.contrast >= threshold:
                pectoral = edge.scaled(factor).mask(image01.shape) & breast
        return SegmentationResult(breast_mask=breast, pectoral_mask=pectoral)


class SeedSegmenter:
    """The seed's recipe, as its Ray job ran it: the 8-bit image blurred 5 x 5 (OpenCV's sigma 1.1), one
    Otsu threshold on the whole image, a 3 x 3 opening then closing, and the largest outer contour.

    The mask is the thresholded breast inside that contour (holes stay, as the seed masked with the
    threshold itself); no pectoral muscle is looked for. Kept so that ``mdd eval-seg --backend seed``
    can compare it with ``classic``.
    """

    name = "seed"

    def segment(self, image01: np.ndarray, view: str | None) -> SegmentationResult:
        """Segment an oriented display image the seed's way (``view`` is not used)."""
        grey = np.clip(np.rint(np.asarray(image01, dtype=np.float32) * 255.0), 0, 255)
        blurred = ndimage.gaussian_filter(grey, 1.1, truncate=2.0 / 1.1)  # a 5 x 5 kernel
        empty = np.zeros(grey.shape, dtype=bool)
        if float(blurred.max()) - float(blurred.min()) < 1.0:
            return SegmentationResult(breast_mask=empty, pectoral_mask=empty)
        mask = blurred > threshold_otsu(blurred)
        square = np.ones((3, 3), dtype=bool)
        mask = ndimage.binary_closing(ndimage.binary_opening(mask, square), square)
        labels, count = ndimage.label(mask)
        if count == 0:
            return SegmentationResult(breast_mask=empty, pectoral_mask=empty)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        largest = labels == int(sizes.argmax())
        inside = fill_holes(largest)  # the region the outer contour encloses
        return SegmentationResult(breast_mask=inside & mask, pectoral_mask=empty)


def build_segmenter(settings: Settings) -> Segmenter:
    """The backend chosen by ``MDD_SEGMENTATION_BACKEND``.

    ``sam`` loads the checkpoint now, so a missing or wrong one fails at startup
    (:class:`shared.imaging.sam.SamSetupError`), not at the first study.
    """
    if settings.segmentation_backend == "sam":
        from shared.imaging.sam import SamSegmenter

        return SamSegmenter(
            model_type=settings.sam_model_type, checkpoint=settings.sam_checkpoint, device=settings.sam_device
        )
    if settings.segmentation_backend == "seed":
        return SeedSegmenter()
    return ClassicSegmenter()


__all__ = [
    "SEGMENTATION_MAX_SIDE",
    "ClassicSegmenter",
    "PectoralEdge",
    "SeedSegmenter",
    "SegmentationResult",
    "Segmenter",
    "build_segmenter",
    "fill_holes",
    "find_pectoral_edge",
    "pectoral_threshold",
    "segment_breast",
    "upsample_mask",
    "working_copy",
]
