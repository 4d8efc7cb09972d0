"""The DICOM vocabulary: every projection finds its slot, by ViewPosition or by code; modifiers are read."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from shared.dicom_vocabulary import (
    DimseStatus,
    Laterality,
    View,
    ViewModifier,
    has_standard_views,
    laterality_from_dataset,
    projection_from_dataset,
    view_modifiers_from_dataset,
    view_of,
)


@pytest.mark.parametrize(
    ("position", "slot"),
    [("CC", View.CC), ("xccl", View.CC), ("XCCM", View.CC), ("FB", View.CC), ("MLO", View.MLO), ("ML", View.MLO),
     ("LM", View.MLO), ("LMO", View.MLO), ("SIO", View.MLO), (" lm ", View.MLO), ("AP", None), ("", None), (None, None)],
)
def test_every_mammography_projection_fills_its_slot(position: str | None, slot: View | None) -> None:
    assert view_of(position) is slot


def _coded(value: str, scheme: str = "SCT", meaning: str = "") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def test_view_code_sequence_alone_names_the_projection_and_its_modifiers() -> None:
    ds = Dataset()
    view = _coded("399352003", meaning="latero-medial")
    view.ViewModifierCodeSequence = [_coded("399163009", meaning="Magnification"), _coded("399055006")]
    ds.ViewCodeSequence = [view]
    projection = projection_from_dataset(ds)
    assert projection is not None and projection.view_position == "LM" and projection.view is View.MLO
    assert view_modifiers_from_dataset(ds) == {ViewModifier.MAGNIFICATION, ViewModifier.SPOT_COMPRESSION}


def test_legacy_snomed_rt_view_code_and_modifier_by_meaning() -> None:
    ds = Dataset()
    ds.ViewCodeSequence = [_coded("R-10242", "SRT")]
    ds.ViewModifierCodeSequence = [_coded("X-1", "99VENDOR", "Implant Displaced")]
    assert projection_from_dataset(ds).view is View.CC  # type: ignore[union-attr]
    assert view_modifiers_from_dataset(ds) == {ViewModifier.IMPLANT_DISPLACED}


def test_laterality_from_image_laterality_then_laterality() -> None:
    ds = Dataset()
    ds.Laterality = "l"
    assert laterality_from_dataset(ds) is Laterality.LEFT
    ds.ImageLaterality = "R"
    assert laterality_from_dataset(ds) is Laterality.RIGHT
    assert laterality_from_dataset(Dataset()) is None


def test_a_study_of_lm_xccl_and_ml_views_has_the_four_standard_views() -> None:
    assert has_standard_views([("R", "XCCL"), ("L", "CC"), ("R", "LM"), ("L", "ML")])
    assert not has_standard_views([("R", "CC"), ("L", "CC"), ("R", "MLO"), ("R", "ML")])


def test_statuses_match_the_standard_codes() -> None:
    assert DimseStatus.OUT_OF_RESOURCES == 0xA700 and DimseStatus.CANNOT_UNDERSTAND == 0xC000
    assert DimseStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS is DimseStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS


def test_a_view_given_only_by_its_code_has_a_slot_and_a_label() -> None:
    from shared.dicom_vocabulary import parse_view_label, slot_from_dataset, view_label

    ds = Dataset()
    ds.ImageLaterality = "R"
    ds.ViewCodeSequence = [_coded("399192008", meaning="cranio-caudal exaggerated laterally")]  # XCCL
    assert slot_from_dataset(ds) == ("R", "CC")
    assert view_label("R", "LM") == "R-MLO" and view_label(None, "AP") == "?-AP"
    assert parse_view_label(view_label("l", "XCCM")) == ("L", "CC")


def test_patient_orientation_says_how_a_view_must_be_mirrored_to_hang() -> None:
    from shared.dicom_vocabulary import hanging_flips

    ds = Dataset()
    assert hanging_flips(ds, (Laterality.RIGHT, View.CC)) is None  # nothing declared
    ds.PatientOrientation = ["P", "L"]
    assert hanging_flips(ds, (Laterality.RIGHT, View.CC)) == (False, False)
    ds.PatientOrientation = ["A", "R"]  # stored as a left CC hangs: mirrored both ways for a right CC slot
    assert hanging_flips(ds, (Laterality.RIGHT, View.CC)) == (True, True)
    ds.PatientOrientation = ["AL", "FR"]  # oblique directions: the first letter decides
    assert hanging_flips(ds, (Laterality.LEFT, View.MLO)) == (False, False)


def test_the_chest_wall_is_on_the_side_with_more_tissue() -> None:
    import numpy as np

    from shared.dicom_vocabulary import chest_wall_on_left

    image = np.zeros((40, 30), dtype=np.float32)
    image[:, :12] = 0.8
    assert chest_wall_on_left(image) and not chest_wall_on_left(image[:, ::-1])
