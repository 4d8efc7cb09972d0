"""Synthetic mammography generator: DICOM tags, reproducibility and ground truth."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian

from shared.synth import (
    MG_FOR_PRESENTATION,
    SyntheticView,
    make_study,
    make_view,
    write_studies,
)


def _reread(view: SyntheticView) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(view.to_bytes()))


def _disk(shape: tuple[int, int], center: tuple[int, int], radius: int) -> np.ndarray:
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius * radius


def test_study_has_four_standard_views_of_one_patient() -> None:
    study = make_study(seed=3, hospital_id="HOSP-GDL", patient_id="P-001")
    datasets = [_reread(v) for v in study.views]

    standard = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
    assert [(v.laterality, v.view) for v in study.views] == standard
    assert [(ds.ImageLaterality, ds.ViewPosition) for ds in datasets] == [
        ("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"),
    ]
    assert {ds.StudyInstanceUID for ds in datasets} == {study.study_uid}
    assert {ds.AccessionNumber for ds in datasets} == {study.accession_number}
    assert {ds.PatientID for ds in datasets} == {"P-001"}
    assert {ds.InstitutionName for ds in datasets} == {"HOSP-GDL"}
    assert len({ds.SOPInstanceUID for ds in datasets}) == 4
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 4
    for ds in datasets:
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert UID(uid).is_valid


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_view_carries_mammography_tags(photometric: str) -> None:
    ds = _reread(make_view(laterality="L", view="MLO", seed=1, photometric=photometric))

    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == MG_FOR_PRESENTATION == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert (ds.Modality, ds.BodyPartExamined, ds.PatientSex) == ("MG", "BREAST", "F")
    assert (ds.ImageLaterality, ds.ViewPosition) == ("L", "MLO")
    assert ds.ViewCodeSequence[0].CodeMeaning == "medio-lateral oblique"
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert ds.PhotometricInterpretation == photometric
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert (ds.SamplesPerPixel, ds.Rows, ds.Columns) == (1, 512, 416)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
    assert ds.BurnedInAnnotation == "NO"
    assert ds.Manufacturer == "Mexican Deep DICOM (sintético)"
    assert str(ds.PatientName).startswith("PRUEBA")
    for keyword in ("PatientBirthDate", "StudyDate", "StudyTime", "ContentDate", "ContentTime",
                    "StudyID", "SeriesNumber", "InstanceNumber", "ReferringPhysicianName",
                    "WindowCenter", "WindowWidth", "ImagerPixelSpacing", "ImageType"):
        assert keyword in ds, keyword
    # A full detector is 409.6 mm tall whatever the matrix size.
    assert float(ds.PixelSpacing[0]) * ds.Rows == pytest.approx(409.6)
    assert float(ds.PixelSpacing[1]) * ds.Columns == pytest.approx(332.8)


def test_same_seed_gives_identical_files_and_other_seed_differs() -> None:
    first = make_study(seed=11, finding="mass")
    again = make_study(seed=11, finding="mass")
    other = make_study(seed=12, finding="mass")

    assert [v.to_bytes() for v in first.views] == [v.to_bytes() for v in again.views]
    assert first.study_uid == again.study_uid != other.study_uid
    assert first.views[0].dataset.SOPInstanceUID != other.views[0].dataset.SOPInstanceUID
    assert not np.array_equal(first.views[0].dataset.pixel_array, other.views[0].dataset.pixel_array)


def test_monochrome1_stores_inverted_values_with_same_masks() -> None:
    kw = dict(laterality="R", view="MLO", seed=4, finding="calcifications")
    mono2 = make_view(photometric="MONOCHROME2", **kw)  # type: ignore[arg-type]
    mono1 = make_view(photometric="MONOCHROME1", **kw)  # type: ignore[arg-type]

    assert np.array_equal(mono1.dataset.pixel_array.astype(int), 4095 - mono2.dataset.pixel_array.astype(int))
    assert np.array_equal(mono1.breast_mask, mono2.breast_mask)
    assert np.array_equal(mono1.pectoral_mask, mono2.pectoral_mask)
    assert mono1.findings == mono2.findings
    assert float(mono1.dataset.WindowCenter) == 4095 - float(mono2.dataset.WindowCenter)


def test_pixels_are_12_bit_with_dark_background_and_brighter_breast() -> None:
    view = make_view(laterality="L", view="CC", seed=2)
    pixels = view.dataset.pixel_array

    assert pixels.dtype == np.uint16 and int(pixels.max()) <= 4095
    assert int(pixels[~view.breast_mask].max()) <= 100
    assert 1000 <= float(np.median(pixels[view.breast_mask])) <= 3000


def test_denser_breast_has_more_bright_tissue() -> None:
    fatty = make_view(laterality="R", view="CC", seed=6, density=0.1)
    dense = make_view(laterality="R", view="CC", seed=6, density=0.8)

    def bright_fraction(view: SyntheticView) -> float:
        return float((view.dataset.pixel_array[view.breast_mask] > 2100).mean())

    assert bright_fraction(dense) > bright_fraction(fatty) + 0.4


@pytest.mark.parametrize("kind", ["mass", "calcifications"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finding_lies_inside_breast_away_from_muscle(kind: str, seed: int) -> None:
    study = make_study(seed=seed, finding=kind, finding_laterality="R")  # type: ignore[arg-type]
    by_side = {(v.laterality, v.view): v for v in study.views}

    assert not by_side["L", "CC"].findings and not by_side["L", "MLO"].findings
    for key in (("R", "CC"), ("R", "MLO")):
        view = by_side[key]
        assert len(view.findings) == 1
        finding = view.findings[0]
        assert finding.kind == kind
        lesion = _disk(view.breast_mask.shape, finding.center_rc, finding.radius_px)
        assert view.breast_mask[lesion].all()
        assert not view.pectoral_mask[lesion].any()
        pixels = view.dataset.pixel_array
        if kind == "mass":
            core = _disk(pixels.shape, finding.center_rc, max(1, finding.radius_px // 3))
            assert float(pixels[core].mean()) > float(pixels[view.breast_mask].mean()) + 500
        else:
            assert int(pixels[lesion].max()) >= 3700


def test_pectoral_muscle_only_on_mlo_in_the_upper_chest_wall_corner() -> None:
    study = make_study(seed=8)
    for view in study.views:
        if view.view == "CC":
            assert not view.pectoral_mask.any()
            continue
        assert view.pectoral_mask.any()
        assert not (view.pectoral_mask & ~view.breast_mask).any()
        corner_col = -1 if view.laterality == "R" else 0
        assert view.pectoral_mask[0, corner_col]
        assert not view.pectoral_mask[-1, corner_col]


def test_chest_wall_side_follows_stored_convention() -> None:
    # Right breasts: chest wall on the image's right edge; left breasts: on the left edge.
    for view in make_study(seed=9).views:
        left_edge, right_edge = view.breast_mask[:, 0].sum(), view.breast_mask[:, -1].sum()
        if view.laterality == "R":
            assert right_edge > 0.5 * view.breast_mask.shape[0] and left_edge == 0
        else:
            assert left_edge > 0.5 * view.breast_mask.shape[0] and right_edge == 0


def test_part10_bytes_read_back_with_same_pixels(tmp_path: Path) -> None:
    view = make_view(laterality="R", view="CC", seed=5, finding="mass")
    data = view.to_bytes()

    assert data[128:132] == b"DICM"
    assert np.array_equal(pydicom.dcmread(io.BytesIO(data)).pixel_array, view.dataset.pixel_array)
    path = view.save(tmp_path / "a" / "view.dcm")
    assert np.array_equal(pydicom.dcmread(path).pixel_array, view.dataset.pixel_array)


def test_study_and_batch_writers_lay_out_files(tmp_path: Path) -> None:
    paths = make_study(seed=1).save(tmp_path / "one")
    assert sorted(p.name for p in paths) == ["L_CC.dcm", "L_MLO.dcm", "R_CC.dcm", "R_MLO.dcm"]

    studies = write_studies(tmp_path / "many", count=2, seed=20, finding="mass")
    files = sorted((tmp_path / "many").rglob("*.dcm"))
    assert len(studies) == 2 and len(files) == 8
    assert {pydicom.dcmread(f).StudyInstanceUID for f in files} == {s.study_uid for s in studies}
    assert {f.parent.name for f in files} == {s.accession_number for s in studies}


def test_full_field_detector_size() -> None:
    view = make_view(laterality="L", view="MLO", rows=4096, cols=3328, seed=1, finding="mass")
    pixels = view.dataset.pixel_array

    assert pixels.shape == view.breast_mask.shape == (4096, 3328)
    assert [float(x) for x in view.dataset.PixelSpacing] == pytest.approx([0.1, 0.1])
    assert view.breast_mask[view.findings[0].center_rc]
    assert 0.2 < float(view.breast_mask.mean()) < 0.8


@pytest.mark.parametrize(
    "kwargs",
    [{"laterality": "B", "view": "CC"}, {"laterality": "R", "view": "ML"},
     {"laterality": "R", "view": "CC", "density": 1.5}, {"laterality": "R", "view": "CC", "rows": 10}],
)
def test_rejects_unsupported_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_view(**kwargs)  # type: ignore[arg-type]
