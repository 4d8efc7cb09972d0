"""Classic segmentation against the generator's masks: breast outline and pectoral muscle."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from shared.imaging.display import to_display
from shared.imaging.pipeline import orient
from shared.imaging.segmentation import (
    ClassicSegmenter,
    PectoralEdge,
    SegmentationResult,
    build_segmenter,
    fill_holes,
    find_pectoral_edge,
    working_copy,
)
from shared.settings import Settings
from shared.synth import SyntheticView, make_view

SAMPLE_SIZE = 20


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _oriented(view: SyntheticView) -> np.ndarray:
    return orient(to_display(pydicom.dcmread(io.BytesIO(view.to_bytes()))), view.laterality)


def _sample() -> list[SyntheticView]:
    """Both breasts and views, both photometric interpretations, densities 0..1, with and without findings."""
    rng = np.random.default_rng(2024)
    views = []
    for index in range(SAMPLE_SIZE):
        views.append(
            make_view(
                laterality="RL"[index % 2],  # type: ignore[arg-type]
                view=("CC", "MLO")[index // 2 % 2],  # type: ignore[arg-type]
                seed=500 + index,
                density=float(rng.uniform(0.0, 1.0)),
                photometric=("MONOCHROME2", "MONOCHROME1")[index // 4 % 2],  # type: ignore[arg-type]
                finding=(None, "mass", "calcifications")[index % 3],  # type: ignore[arg-type]
            )
        )
    return views


@pytest.fixture(scope="module")
def scored() -> list[tuple[SyntheticView, SegmentationResult]]:
    segmenter = ClassicSegmenter()
    return [(view, segmenter.segment(_oriented(view), view.view)) for view in _sample()]


def test_breast_mask_mean_iou_reaches_target(scored: list[tuple[SyntheticView, SegmentationResult]]) -> None:
    ious = [_iou(result.breast_mask, orient(view.breast_mask, view.laterality)) for view, result in scored]
    assert np.mean(ious) >= 0.95
    assert min(ious) >= 0.9


def test_pectoral_mean_iou_on_mlo_views_reaches_target(
    scored: list[tuple[SyntheticView, SegmentationResult]],
) -> None:
    ious = [
        _iou(result.pectoral_mask, orient(view.pectoral_mask, view.laterality))
        for view, result in scored
        if view.view == "MLO"
    ]
    assert len(ious) == SAMPLE_SIZE // 2
    assert np.mean(ious) >= 0.85


def test_cc_views_have_no_pectoral_and_masks_are_consistent(
    scored: list[tuple[SyntheticView, SegmentationResult]],
) -> None:
    for view, result in scored:
        assert result.breast_mask.shape == result.pectoral_mask.shape == view.breast_mask.shape
        assert result.breast_mask.dtype == result.pectoral_mask.dtype == np.bool_
        assert not (result.pectoral_mask & ~result.breast_mask).any()
        assert np.array_equal(result.tissue_mask, result.breast_mask & ~result.pectoral_mask)
        if view.view == "CC":
            assert not result.pectoral_mask.any()


def test_unknown_view_finds_the_muscle_only_on_mlo() -> None:
    segmenter = ClassicSegmenter()
    for index, view in enumerate(_sample()[:8]):
        result = segmenter.segment(_oriented(view), None)
        assert result.pectoral_mask.any() == (view.view == "MLO"), index


def test_pectoral_edge_matches_the_drawn_muscle_line() -> None:
    view = make_view(laterality="L", view="MLO", seed=31, density=0.8)
    small, factor = working_copy(_oriented(view))
    edge = find_pectoral_edge(small, ClassicSegmenter().segment(small, "MLO").breast_mask)

    assert factor == 1 and edge is not None
    truth = view.pectoral_mask
    # The drawn edge meets the top row at the muscle's width there and the chest wall at its height.
    assert edge.top == pytest.approx(truth[0].sum(), abs=4)
    assert edge.side == pytest.approx(truth[:, 0].sum(), abs=8)
    assert _iou(edge.mask(truth.shape) & view.breast_mask, truth) >= 0.95


def test_full_field_pectoral_is_scaled_back() -> None:
    view = make_view(laterality="R", view="MLO", rows=2048, cols=1664, seed=32, density=0.5)
    result = ClassicSegmenter().segment(_oriented(view), "MLO")
    assert _iou(result.pectoral_mask, orient(view.pectoral_mask, "R")) >= 0.9
    assert _iou(result.breast_mask, orient(view.breast_mask, "R")) >= 0.95


def test_edge_mask_is_the_corner_triangle() -> None:
    mask = PectoralEdge(top=4.0, side=6.0, contrast=1.0).mask((8, 8))
    assert mask[0, :4].all() and not mask[0, 4:].any()
    assert mask[:6, 0].all() and not mask[6:, 0].any()
    assert not mask[7, 7]


def test_build_segmenter_defaults_to_classic() -> None:
    segmenter = build_segmenter(Settings())
    assert isinstance(segmenter, ClassicSegmenter) and segmenter.name == "classic"


def test_flat_image_gives_empty_masks() -> None:
    result = ClassicSegmenter().segment(np.zeros((64, 64), dtype=np.float32), "MLO")
    assert not result.breast_mask.any() and not result.pectoral_mask.any()


def test_fill_holes_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        mask = ndimage.binary_opening(rng.random((60, 50)) > 0.55)
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
