"""One-view preprocessing on synthetic mammograms with known ground truth."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from matplotlib import colormaps
from PIL import Image
from pydicom.dataset import Dataset

from shared.imaging.pipeline import (
    crop_to_mask,
    magma,
    orient,
    png_bytes,
    preprocess_view,
    resize_model_input,
    segment_breast,
    to_display,
    view_of,
)
from shared.synth import SyntheticView, make_study, make_view


def _dataset(view: SyntheticView) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(view.to_bytes()))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_matches_generator_breast(photometric: str, seed: int) -> None:
    density = (0.1, 0.5, 0.9)[seed]
    study = make_study(
        seed=seed, photometric=photometric, density=density, finding="mass"  # type: ignore[arg-type]
    )
    for view in study.views:
        result = preprocess_view(_dataset(view))
        truth = orient(view.breast_mask, view.laterality)
        assert _iou(result.mask, truth) >= 0.95, (view.laterality, view.view)
        assert result.breast_area_fraction == pytest.approx(float(truth.mean()), abs=0.03)
        assert result.flags == []


def test_mask_survives_missing_window() -> None:
    view = make_view(laterality="R", view="MLO", seed=3, density=0.7)
    ds = _dataset(view)
    del ds.WindowCenter, ds.WindowWidth
    assert _iou(preprocess_view(ds).mask, orient(view.breast_mask, "R")) >= 0.95


def test_display_is_bright_breast_for_both_photometric_interpretations() -> None:
    kw = dict(laterality="L", view="CC", seed=4)
    mono2 = to_display(_dataset(make_view(photometric="MONOCHROME2", **kw)))  # type: ignore[arg-type]
    mono1_view = make_view(photometric="MONOCHROME1", **kw)  # type: ignore[arg-type]
    mono1 = to_display(_dataset(mono1_view))

    assert mono2.dtype == np.float32 and 0.0 <= mono2.min() and mono2.max() <= 1.0
    assert np.allclose(mono1, mono2, atol=1e-3)
    breast = mono1_view.breast_mask
    assert float(mono1[breast].mean()) > 0.2 > float(mono1[~breast].mean())


def test_model_input_and_previews_have_expected_shapes() -> None:
    view = make_view(laterality="R", view="MLO", seed=5, finding="calcifications")
    result = preprocess_view(_dataset(view))

    assert result.model_input.shape == (336, 224, 3)
    assert result.model_input.dtype == np.float32
    assert 0.0 <= float(result.model_input.min()) and float(result.model_input.max()) <= 1.0
    assert float(result.model_input.std()) > 0.05
    assert result.crop.dtype == np.uint8 and result.crop.ndim == 2
    assert result.magma.dtype == np.uint8 and result.magma.shape == (*result.crop.shape, 3)
    r0, r1, c0, c1 = result.bbox
    assert result.crop.shape == (r1 - r0, c1 - c0)
    assert (result.laterality, result.view) == ("R", "MLO")


def test_right_and_left_breasts_end_up_with_chest_wall_on_the_left() -> None:
    study = make_study(seed=6)
    for view in study.views:
        result = preprocess_view(_dataset(view))
        mask = result.mask
        assert mask[:, 0].mean() > 0.5, (view.laterality, view.view)
        assert mask[:, -1].mean() < 0.05
        if view.view == "MLO":
            # The pectoral muscle now sits in the upper-left corner for both breasts.
            assert orient(view.pectoral_mask, view.laterality)[0, 0]


def test_orient_guesses_side_without_laterality() -> None:
    image = np.zeros((8, 10), dtype=np.float32)
    image[:, 7:] = 1.0
    assert orient(image, None)[:, 0].all()
    assert orient(image, "L") is image
    assert orient(image, "R")[:, 0].all()


def test_flags_for_non_mammography_dataset() -> None:
    ds = _dataset(make_view(laterality="L", view="CC", seed=7))
    ds.Modality = "CT"
    del ds.ImageLaterality, ds.ViewPosition, ds.ViewCodeSequence

    result = preprocess_view(ds)
    assert {"not_mg", "laterality_missing", "view_missing"} <= set(result.flags)
    assert (result.laterality, result.view) == (None, None)


def test_flags_blank_image_as_too_small() -> None:
    ds = _dataset(make_view(laterality="L", view="CC", seed=7))
    blank = np.full((ds.Rows, ds.Columns), 40, dtype=np.uint16)
    blank[10:20, 10:20] = 3000  # a marker, no breast
    ds.PixelData = blank.tobytes()

    result = preprocess_view(ds)
    assert "breast_area_too_small" in result.flags
    assert result.breast_area_fraction < 0.05


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"ImageLaterality": "R", "ViewPosition": "CC"}, ("R", "CC")),
        ({"Laterality": "L", "ViewPosition": "ML"}, ("L", "MLO")),
        ({"ImageLaterality": "B", "ViewPosition": "XCCL"}, (None, "CC")),
        ({"ViewPosition": "AP"}, (None, None)),
    ],
)
def test_view_of_normalises_tags(tags: dict[str, str], expected: tuple[str | None, str | None]) -> None:
    ds = Dataset()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    assert view_of(ds) == expected


def test_view_of_falls_back_to_view_code_sequence() -> None:
    ds = _dataset(make_view(laterality="R", view="MLO", seed=1))
    del ds.ViewPosition
    assert view_of(ds) == ("R", "MLO")


def test_crop_to_mask_is_tight_and_keeps_image_when_mask_empty() -> None:
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:9] = True

    cropped, bbox = crop_to_mask(image, mask)
    assert bbox == (2, 5, 3, 9)
    assert np.array_equal(cropped, image[2:5, 3:9])
    whole, whole_bbox = crop_to_mask(image, np.zeros_like(mask))
    assert whole_bbox == (0, 10, 0, 10) and whole.shape == image.shape


def test_magma_matches_matplotlib_and_resize_scales() -> None:
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :].repeat(4, axis=0)
    coloured = magma(ramp)
    reference = np.round(colormaps["magma"](ramp)[..., :3] * 255).astype(np.uint8)

    assert coloured.dtype == np.uint8 and coloured.shape == (4, 256, 3)
    assert np.abs(coloured.astype(int) - reference.astype(int)).max() <= 1
    model_input = resize_model_input(coloured)
    assert model_input.shape == (336, 224, 3) and model_input.dtype == np.float32
    assert model_input[:, 0].mean() < 0.05 < 0.9 < model_input[:, -1].max()


def test_png_bytes_round_trip() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (12, 9, 3), dtype=np.uint8)
    mask = np.eye(5, dtype=bool)

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(rgb)))), rgb)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(mask)))) > 0, mask)


def test_segment_breast_returns_empty_mask_for_flat_image() -> None:
    assert not segment_breast(np.zeros((64, 64), dtype=np.float32)).any()


def test_full_field_view() -> None:
    view = make_view(laterality="R", view="MLO", rows=4096, cols=3328, seed=2, density=0.6)
    result = preprocess_view(_dataset(view))

    assert result.mask.shape == (4096, 3328)
    assert _iou(result.mask, orient(view.breast_mask, "R")) >= 0.95
    assert result.model_input.shape == (336, 224, 3)
