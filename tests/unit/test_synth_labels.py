"""Labelled synthetic studies: labels, density categories, reproducibility, the manifest they write."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from mlkit.datasets.manifest import read_manifest
from mlkit.training.synthetic import write_synthetic_dataset
from shared.synth import make_view
from shared.synth_labels import (
    APPEARANCES,
    CaseSpec,
    birads_of,
    case_seeds,
    density_category,
    make_labelled_study,
    make_labelled_view,
    malignancy_of_birads,
    sample_case,
)


@pytest.mark.parametrize(
    ("fraction", "category"),
    [(0.0, "A"), (0.249, "A"), (0.25, "B"), (0.49, "B"), (0.5, "C"), (0.74, "C"), (0.75, "D"), (1.0, "D")],
)
def test_density_category_follows_the_fibroglandular_fraction(fraction: float, category: str) -> None:
    assert density_category(fraction) == category


def test_birads_and_malignancy_of_each_appearance() -> None:
    assert [birads_of(a) for a in APPEARANCES] == [1, 2, 2, 3, 4, 4, 5, 5]
    assert [malignancy_of_birads(b) for b in range(7)] == [0, 0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError):
        birads_of("cyst")


def test_suspicious_appearances_are_the_findings_of_the_plain_generator() -> None:
    for appearance, finding in (("suspicious_mass", "mass"), ("suspicious_calcifications", "calcifications")):
        labelled = make_labelled_view(laterality="R", view="CC", appearance=appearance, seed=5, density=0.4)
        plain = make_view(laterality="R", view="CC", finding=finding, seed=5, density=0.4)  # type: ignore[arg-type]
        assert labelled.to_bytes() == plain.to_bytes()
    normal = make_labelled_view(laterality="L", view="MLO", seed=5)
    assert normal.to_bytes() == make_view(laterality="L", view="MLO", seed=5).to_bytes()


@pytest.mark.parametrize("appearance", ["benign_mass", "probably_benign_mass", "spiculated_mass",
                                        "benign_calcifications", "linear_calcifications"])
def test_each_finding_changes_the_breast_only_where_it_is_painted(appearance: str) -> None:
    normal = make_labelled_view(laterality="L", view="CC", seed=9, density=0.2)
    with_finding = make_labelled_view(laterality="L", view="CC", appearance=appearance, seed=9, density=0.2)
    [finding] = with_finding.findings
    # Painting draws random numbers, so the noise differs everywhere: compare 3 x 3 means.
    diff = ndimage.uniform_filter(with_finding.dataset.pixel_array.astype(float) - normal.dataset.pixel_array, 3)
    changed = np.argwhere(np.abs(diff) > 120)
    assert len(changed) > 3
    distance = np.hypot(*(changed - np.array(finding.center_rc)).T)
    assert distance.max() <= 4 * finding.radius_px + 6
    assert with_finding.breast_mask[finding.center_rc]


def test_study_labels_put_the_finding_on_one_side_and_share_the_density() -> None:
    spec = CaseSpec(seed=4, appearance="spiculated_mass", finding_laterality="R", density_fraction=0.6)
    study = make_labelled_study(spec)
    assert [(v.laterality, v.view) for v in study.study.views] == [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
    right, left = study.label("R"), study.label("L")
    assert (right.birads, right.malignancy, right.finding) == (5, 1, "mass")
    assert (left.birads, left.malignancy, left.finding) == (1, 0, "")
    assert right.density == left.density == "C"
    assert all(v.findings for v in study.study.views if v.laterality == "R")
    assert not any(v.findings for v in study.study.views if v.laterality == "L")


def test_sampled_cases_cover_every_appearance_and_keep_away_from_density_bounds() -> None:
    cases = [sample_case(s) for s in case_seeds(1, 400)]
    assert set(Counter(c.appearance for c in cases)) == set(APPEARANCES)
    assert set(Counter(density_category(c.density_fraction) for c in cases)) == {"A", "B", "C", "D"}
    fractions = np.array([c.density_fraction for c in cases])
    for bound in (0.25, 0.5, 0.75):
        assert np.abs(fractions - bound).min() >= 0.03 - 1e-9
    assert sample_case(77) == sample_case(77)
    assert not set(case_seeds(1, 400)) & set(case_seeds(2, 400))


def test_synthetic_dataset_writes_a_manifest_of_preprocessed_views(tmp_path: Path) -> None:
    manifest = write_synthetic_dataset(tmp_path / "ds", 2, seed=8, progress=False)
    rows = read_manifest(manifest)
    assert len(rows) == 8 and {r.source for r in rows} == {"synthetic"}
    first = np.load(rows[0].image_path)
    assert first.shape == (336, 224, 3) and first.dtype == np.uint8
    studies = [make_labelled_study(s) for s in case_seeds(8, 2)]
    for row in rows:
        labelled = next(s for s in studies if s.study.study_uid == row.study_id)
        label = labelled.label(row.laterality)
        assert (row.malignancy, row.birads, row.density) == (label.malignancy, label.birads, label.density)
    # A second call with the same seed and count reuses the files.
    before = manifest.stat().st_mtime_ns
    assert write_synthetic_dataset(tmp_path / "ds", 2, seed=8, progress=False).stat().st_mtime_ns == before
