"""The second synthetic generator: valid DICOM in every rendering (dciodvfy), and no pixel-level shortcut."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from mlkit.evaluation.metrics import roc_auc
from shared import synth_v2
from shared.imaging.display import to_display
from shared.imaging.pipeline import preprocess_view
from shared.synth import STORED_CHEST_WALL_SIDE
from shared.synth_labels import case_seeds, density_category
from tests.validators import dciodvfy

# Coarse pixels keep these tests fast; the tags and the rendering code are the same at any spacing.
COARSE = 0.4

RENDERINGS = {
    "presentation-mono2-12-linear-A": synth_v2.Rendering(),
    "presentation-mono1-16-sigmoid-B": synth_v2.Rendering(photometric="MONOCHROME1", bits_stored=16, voi="SIGMOID",
                                                          vendor="B"),
    "presentation-mono2-10-table-C": synth_v2.Rendering(bits_stored=10, voi="TABLE", vendor="C"),
    "presentation-mono2-14-exact-B": synth_v2.Rendering(bits_stored=14, voi="LINEAR_EXACT", vendor="B", markers=False),
    "processing-mono1-14-A": synth_v2.Rendering(for_processing=True, photometric="MONOCHROME1", bits_stored=14, voi="NONE"),
    "processing-mono2-12-C": synth_v2.Rendering(for_processing=True, bits_stored=12, voi="NONE", vendor="C"),
}


def _case(seed: int, rendering: synth_v2.Rendering, spacing: float = COARSE) -> synth_v2.CaseSpecV2:
    return replace(synth_v2.sample_case(seed), rendering=replace(rendering, spacing_mm=spacing))


@pytest.mark.parametrize("name", list(RENDERINGS))
def test_every_rendering_passes_the_mammography_iod(tmp_path: Path, name: str) -> None:
    case = synth_v2.with_finding(_case(5, RENDERINGS[name]), "L", "spiculated_mass")
    for view in synth_v2.make_study(case).views:
        path = view.save(tmp_path / f"{view.laterality}_{view.view}.dcm")
        errors, _ = dciodvfy(path)
        assert errors == [], (name, view.laterality, view.view, errors)


def test_sampled_studies_pass_the_mammography_iod(tmp_path: Path) -> None:
    for seed in range(8):
        case = synth_v2.sample_case(seed)
        case = replace(case, rendering=replace(case.rendering, spacing_mm=COARSE))
        view = synth_v2.make_view(case, "R", "MLO")
        errors, _ = dciodvfy(view.save(tmp_path / f"{seed}.dcm"))
        assert errors == [], (seed, case.rendering, errors)


def test_same_seed_same_bytes() -> None:
    case = _case(3, synth_v2.Rendering())
    assert synth_v2.make_view(case, "L", "CC").to_bytes() == synth_v2.make_view(case, "L", "CC").to_bytes()


def test_tags_say_what_the_pixels_are() -> None:
    for name, rendering in RENDERINGS.items():
        ds = synth_v2.make_view(_case(2, rendering), "R", "CC").dataset
        assert ds.BitsStored == rendering.bits_stored and int(ds.pixel_array.max()) < 2**rendering.bits_stored
        assert ds.PhotometricInterpretation == rendering.photometric
        assert ds.PresentationIntentType == ("FOR PROCESSING" if rendering.for_processing else "FOR PRESENTATION")
        assert ("WindowCenter" in ds or "VOILUTSequence" in ds) == (not rendering.for_processing), name
        assert float(ds.ImagerPixelSpacing[0]) == pytest.approx(COARSE)
        display = to_display(ds)
        breast = synth_v2.make_view(_case(2, rendering), "R", "CC").breast_mask
        assert np.median(display[breast]) > np.median(display[~breast]) + 0.2, name  # breast bright whatever the tags


def test_full_field_geometry_and_realistic_spacing() -> None:
    rendering = synth_v2.sample_rendering(np.random.default_rng(0))
    assert 0.05 <= rendering.spacing_mm <= 0.1
    for detector, (height, width) in synth_v2.DETECTORS.items():
        drawn = synth_v2.draw_view(_case(1, synth_v2.Rendering(detector=detector), 0.1), "L", "MLO")
        assert drawn.attenuation.shape == (round(height / 0.1), round(width / 0.1))
        assert drawn.pectoral.any() and (drawn.pectoral <= drawn.breast).all()


def test_calcifications_are_drawn_at_their_physical_size() -> None:
    rng = np.random.default_rng(0)
    for kind in ("pleomorphic_cluster", "fine_linear_calcifications", "scattered_calcifications", "coarse_calcifications"):
        spots = synth_v2._calcification_spots(rng, kind, 10.0, 0.07)
        assert spots and all(0.1 <= diameter <= 1.5 for _, _, diameter, _ in spots), kind
    malignant = [d for _, _, d, _ in synth_v2._calcification_spots(rng, "pleomorphic_cluster", 10.0, 0.07)]
    benign = [d for _, _, d, _ in synth_v2._calcification_spots(rng, "coarse_calcifications", 10.0, 0.07)]
    assert max(malignant) < min(benign)  # the fine ones are the suspicious ones


def test_a_mass_hides_in_dense_tissue() -> None:
    """The same mass adds much less contrast where the breast is dense than where it is fatty."""
    base = synth_v2.without_findings(_case(4, synth_v2.Rendering(), 0.2))
    contrasts = {}
    for dense in (0.05, 0.9):
        case = replace(base, left=replace(base.left, dense_fraction=dense))
        plain = synth_v2.draw_view(case, "L", "CC").attenuation
        with_mass = synth_v2.draw_view(synth_v2.with_finding(case, "L", "irregular_mass", size_mm=18.0), "L", "CC")
        added = with_mass.attenuation - plain
        contrasts[dense] = float(added[added > 1e-3].mean())
    assert contrasts[0.9] < 0.7 * contrasts[0.05], contrasts


def test_markers_are_burned_in_and_read_the_right_way_round() -> None:
    case = _case(6, synth_v2.Rendering(markers=True), 0.2)
    for laterality in ("R", "L"):
        view = synth_v2.make_view(case, laterality, "CC")
        ds = view.dataset
        assert ds.BurnedInAnnotation == "YES"
        pixels = ds.pixel_array
        air = ~view.breast_mask
        top = 2**ds.BitsStored - 1
        marked = air & (pixels == top)
        assert marked.sum() > 50
        cols = np.flatnonzero(marked.any(axis=0))
        far_side = "left" if STORED_CHEST_WALL_SIDE[laterality] == "right" else "right"
        middle = pixels.shape[1] / 2
        assert (cols.mean() < middle) == (far_side == "left")  # away from the chest wall


def test_no_pixel_level_shortcut_to_the_labels() -> None:
    """Neither the brightest pixel of the CC crop nor the bright-area fraction gives the labels away."""
    max_grey, bright, malignant, density = [], [], [], []
    for study_seed in case_seeds(77, 30):
        case = synth_v2.sample_case(study_seed)
        case = replace(case, rendering=replace(case.rendering, spacing_mm=0.2))
        for laterality in ("R", "L"):
            view = synth_v2.make_view(case, laterality, "CC")
            result = preprocess_view(view.dataset)
            crop = result.crop[result.mask[result.bbox[0]:result.bbox[1], result.bbox[2]:result.bbox[3]]]
            max_grey.append(float(np.percentile(crop, 99.99)))
            bright.append(float((crop > 0.6 * 255).mean()))
            breast = case.breast(laterality)
            malignant.append(int(breast.malignant))
            density.append("ABCD".index(density_category(breast.dense_fraction)))
    y = np.asarray(malignant)
    assert 0 < y.sum() < y.size
    auc = roc_auc(y, np.asarray(max_grey))
    assert 0.3 < auc < 0.75, auc  # the first generator: 0.976
    r = abs(float(np.corrcoef(bright, density)[0, 1]))
    assert r < 0.95, r  # the first generator: 0.9995


def test_reading_the_file_back_gives_the_same_pixels() -> None:
    view = synth_v2.make_view(_case(8, synth_v2.Rendering(bits_stored=16)), "L", "MLO")
    again = pydicom.dcmread(io.BytesIO(view.to_bytes()))
    np.testing.assert_array_equal(again.pixel_array, view.dataset.pixel_array)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_the_first_generator_passes_the_mammography_iod_too(tmp_path: Path, photometric: str) -> None:
    from shared.synth import make_view

    view = make_view(laterality="R", view="MLO", photometric=photometric, finding="calcifications")  # type: ignore[arg-type]
    errors, _ = dciodvfy(view.save(tmp_path / "v1.dcm"))
    assert errors == []
    assert view.dataset.PixelIntensityRelationshipSign == (1 if photometric == "MONOCHROME1" else -1)
