"""De-identification for providers (PS3.15 Basic Profile through dicognito) and the way back."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from shared.db import init_db, make_engine
from shared.synth import SyntheticStudy
from services.notify.providers.deidentify import DeidentificationError, deidentify
from services.notify.providers.mapping import UnknownDeidStudy, record_mapping, reidentify
from services.notify.providers.tables import DeidStudyMap

SEED = "semilla-del-proveedor-acme"


def _view_bytes(study: SyntheticStudy, index: int = 0, **changes: object) -> bytes:
    dataset = dcmread(io.BytesIO(study.views[index].to_bytes()))
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _da(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:]))


def test_patient_identity_dates_and_free_text_are_gone_and_pixels_kept(
    four_view_study: SyntheticStudy,
) -> None:
    raw = _view_bytes(four_view_study, ImageComments="Paciente MARIA, cama 4")
    original = dcmread(io.BytesIO(raw))
    original.add_new(0x00091010, "LO", "privado")  # a private attribute too
    buffer = io.BytesIO()
    original.save_as(buffer, enforce_file_format=True)
    copy = deidentify(buffer.getvalue(), SEED)
    result = dcmread(io.BytesIO(copy.data))

    assert str(result.PatientName) != str(original.PatientName)
    assert result.PatientID != original.PatientID
    assert (
        result.AccessionNumber != original.AccessionNumber and copy.accession_number == result.AccessionNumber
    )
    assert result.StudyDate != original.StudyDate and result.PatientBirthDate != original.PatientBirthDate
    # one offset for every date: the patient's age at the study is kept
    assert _da(result.StudyDate) - _da(result.PatientBirthDate) == _da(original.StudyDate) - _da(
        original.PatientBirthDate
    )
    for keyword in ("StudyDescription", "SeriesDescription", "ImageComments"):
        assert keyword not in result
    assert 0x00091010 not in result
    for identifier in (
        str(original.PatientName),
        original.PatientID,
        original.AccessionNumber,
        original.StudyInstanceUID,
    ):
        assert identifier.encode() not in copy.data
    assert result.PixelData == original.PixelData
    assert (result.Rows, result.Columns, result.ImageLaterality, result.ViewPosition) == (
        original.Rows,
        original.Columns,
        original.ImageLaterality,
        original.ViewPosition,
    )
    assert result.PatientIdentityRemoved == "YES"
    assert {item.CodeValue for item in result.DeidentificationMethodCodeSequence} == {
        "113100",
        "113107",
        "113108",
    }
    assert result.file_meta.MediaStorageSOPInstanceUID == result.SOPInstanceUID == copy.sop_uid


def test_uids_are_replaced_consistently_per_provider_and_differently_between_providers(
    four_view_study: SyntheticStudy,
) -> None:
    acme = [deidentify(view.to_bytes(), SEED) for view in four_view_study.views]
    again = deidentify(four_view_study.views[0].to_bytes(), SEED)
    other = deidentify(four_view_study.views[0].to_bytes(), "semilla-de-otro-proveedor")

    assert len({copy.study_uid for copy in acme}) == 1 and acme[0].study_uid != four_view_study.study_uid
    assert len({copy.sop_uid for copy in acme}) == 4
    assert again.data == acme[0].data  # a redelivery writes the very same copy
    assert other.study_uid != acme[0].study_uid and other.sop_uid != acme[0].sop_uid


def test_burned_in_annotation_and_unreadable_files_are_refused(four_view_study: SyntheticStudy) -> None:
    with pytest.raises(DeidentificationError, match="burned-in"):
        deidentify(_view_bytes(four_view_study, BurnedInAnnotation="YES"), SEED)
    with pytest.raises(DeidentificationError, match="unreadable"):
        deidentify(b"esto no es DICOM", SEED)


def test_an_instance_that_does_not_state_burned_in_annotation_is_not_sent(
    four_view_study: SyntheticStudy,
) -> None:
    dataset = dcmread(io.BytesIO(four_view_study.views[0].to_bytes()))
    del dataset.BurnedInAnnotation
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    with pytest.raises(DeidentificationError, match="not stated"):
        deidentify(buffer.getvalue(), SEED)


def test_icon_image_and_every_comment_or_description_attribute_are_removed(
    four_view_study: SyntheticStudy,
) -> None:
    icon = Dataset()
    icon.Rows, icon.Columns = 2, 2
    copy = deidentify(
        _view_bytes(
            four_view_study,
            IconImageSequence=[icon],
            ImageComments="Paciente Juana Pérez",
            PatientComments="llamar al 555",
            StudyComments="nota",
        ),
        SEED,
    )
    result = dcmread(io.BytesIO(copy.data))
    assert "IconImageSequence" not in result
    left = [e.keyword for e in result.iterall() if e.keyword.endswith(("Comments", "Comment", "Description"))]
    assert left == []
    assert result.PatientIdentityRemoved == "YES"
    codes = {item.CodeValue for item in result.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113107", "113108"}
    assert all(item.CodingSchemeDesignator == "DCM" for item in result.DeidentificationMethodCodeSequence)


def test_sequences_are_walked_too(four_view_study: SyntheticStudy) -> None:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"
    item.ReferencedSOPInstanceUID = four_view_study.views[1].dataset.SOPInstanceUID
    item.PatientComments = "nota libre"
    copy = deidentify(_view_bytes(four_view_study, ReferencedInstanceSequence=[item]), SEED)
    nested = dcmread(io.BytesIO(copy.data)).ReferencedInstanceSequence[0]
    assert nested.ReferencedSOPInstanceUID == deidentify(four_view_study.views[1].to_bytes(), SEED).sop_uid
    assert "PatientComments" not in nested


def test_the_same_study_sent_by_two_hospitals_reaches_a_provider_as_two_studies(
    tmp_path: Path, four_view_study: SyntheticStudy
) -> None:
    from services.notify.providers.mapping import lookup
    from services.notify.providers.offers import deid_seed
    from services.notify.providers.registry import Provider

    provider = Provider(provider_id="acme", display_name="Acme", hospitals=["H1", "H2"], deid_seed=SEED)
    engine = make_engine(f"sqlite:///{tmp_path / 'mdd.db'}")
    init_db(engine, [DeidStudyMap])
    copies = {hospital: deidentify(four_view_study.views[0].to_bytes(), deid_seed(provider, hospital)) for hospital in ("H1", "H2")}
    assert copies["H1"].study_uid != copies["H2"].study_uid and copies["H1"].sop_uid != copies["H2"].sop_uid
    for hospital, copy in copies.items():
        record_mapping(engine, DeidStudyMap(
            provider_id="acme", deid_study_uid=copy.study_uid, study_uid=four_view_study.study_uid,
            accession_number=four_view_study.accession_number, deid_accession_number=copy.accession_number, hospital_id=hospital,
        ))
    # The provider's report on each copy comes back to its own hospital's study.
    assert {hospital: lookup(engine, "acme", copy.study_uid).hospital_id for hospital, copy in copies.items()} == {"H1": "H1", "H2": "H2"}


def test_mapping_round_trip_gives_back_the_original_study(
    tmp_path: Path, four_view_study: SyntheticStudy
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'mdd.db'}")
    init_db(engine, [DeidStudyMap])
    copy = deidentify(four_view_study.views[0].to_bytes(), SEED)
    mapping = dict(
        provider_id="acme",
        deid_study_uid=copy.study_uid,
        study_uid=four_view_study.study_uid,
        accession_number=four_view_study.accession_number,
        deid_accession_number=copy.accession_number,
        hospital_id="H1",
    )
    record_mapping(engine, DeidStudyMap(**mapping))
    record_mapping(engine, DeidStudyMap(**mapping))  # a redelivery records nothing new and does not fail

    assert reidentify(engine, "acme", copy.study_uid) == four_view_study.study_uid
    with pytest.raises(UnknownDeidStudy):
        reidentify(engine, "otro", copy.study_uid)  # another provider cannot resolve acme's UID
    with pytest.raises(UnknownDeidStudy):
        reidentify(engine, "acme", "2.999")


# --------------------------------------------------------------------------- PS3.15 Table E.1-1

#: Kept on purpose, by the option the method codes name (Retain Patient Characteristics Option).
RETAINED_CHARACTERISTICS = frozenset({"PatientSex", "PatientAge", "PatientSize", "PatientWeight"})
_SAMPLE_VALUES = {
    "DA": "20240115", "TM": "101010", "DT": "20240115101010", "AS": "045Y", "CS": "ORIGINAL",
    "AE": "ORIGINALAE", "IS": "7", "DS": "7.5", "US": 7, "UL": 7, "SS": 7, "SL": 7, "FL": 7.5, "FD": 7.5,
    "SV": 7, "UV": 7, "AT": 0x00100010,
}


def _original_value(tag: int, vr: str, index: int) -> object:
    from pydicom.uid import generate_uid

    if vr == "UI":
        return generate_uid(prefix="1.2.826.0.1.3680043.10.543.", entropy_srcs=[str(index)])
    if vr == "PN":
        return f"ORIGINAL{index}^PACIENTE"
    if vr in ("LO", "LT", "ST", "UT", "UC", "SH", "UR"):
        return f"ORIG{index}"[: 16 if vr == "SH" else 64]
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"ORIG" * 2
    if vr == "SQ":
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = f"O{index}", "99ORIG", f"ORIGINAL {index}"
        return [item]
    return _SAMPLE_VALUES[vr]


def _every_profile_attribute(study: SyntheticStudy) -> tuple[bytes, dict[int, tuple[str, object]]]:
    """An MG instance carrying every attribute of Table E.1-1 pydicom knows, each with a value of its own."""
    from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    dataset = dcmread(io.BytesIO(study.views[0].to_bytes()))
    planted: dict[int, tuple[str, object]] = {}
    for category in ("D_TAGS", "Z_TAGS", "X_TAGS", "U_TAGS", "Z_D_TAGS", "X_Z_TAGS", "X_D_TAGS", "X_Z_D_TAGS", "X_Z_U_STAR_TAGS"):
        for entry in getattr(table, category):  # (group, element), or with masks for repeating groups
            tag = (entry[0] << 16) | entry[1]
            if tag in planted or tag >> 16 in (0x0000, 0x0002) or not keyword_for_tag(tag):
                continue
            vr = dictionary_VR(tag).split(" or ")[0]
            if tag in dataset:
                value = dataset[tag].value
            else:
                value = _original_value(tag, vr, len(planted))
                dataset.add_new(tag, vr, value)
            planted[tag] = (category, value)
    dataset.BurnedInAnnotation = "NO"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), planted


def _leaks(original: object, now: object) -> bool:
    if isinstance(original, list):  # a sequence leaks if any of its original items' values survived
        return any(str(item.get("CodeMeaning", "")).startswith("ORIGINAL") for item in now or [])  # type: ignore[union-attr]
    return str(now) == str(original) and str(original) not in ("", "None")


def test_every_attribute_of_table_e_1_1_is_removed_emptied_or_replaced(four_view_study: SyntheticStudy) -> None:
    from pydicom.datadict import keyword_for_tag

    data, planted = _every_profile_attribute(four_view_study)
    assert len(planted) > 450  # the profile's table, not a sample of it
    out = dcmread(io.BytesIO(deidentify(data, SEED).data))
    leaked, kept_but_removed_by_x, uids_not_replaced = [], [], []
    for tag, (category, original) in planted.items():
        keyword = keyword_for_tag(tag)
        if keyword in RETAINED_CHARACTERISTICS:
            assert out[tag].value == original, keyword  # the option keeps them as they were
            continue
        element = out.get(tag)
        if element is None or element.value in (None, "", b"", []):
            continue  # removed or emptied: X and Z, and what X/Z/D allows
        if category == "X_TAGS" and element.VR not in ("DA", "DT", "TM"):  # dates: the Modified Dates Option shifts them
            kept_but_removed_by_x.append(keyword)
        elif category == "U_TAGS" and (str(element.value) == str(original) or not str(element.value).replace(".", "").isdigit()):
            uids_not_replaced.append(keyword)
        elif _leaks(original, element.value):
            leaked.append(keyword)
    assert leaked == [], f"original values survived: {leaked}"
    assert kept_but_removed_by_x == [], f"X (remove) attributes still present: {kept_but_removed_by_x}"
    assert uids_not_replaced == [], f"U attributes not replaced by new UIDs: {uids_not_replaced}"
    assert out.PatientIdentityRemoved == "YES"
    assert "113100" in {code.CodeValue for code in out.DeidentificationMethodCodeSequence}
