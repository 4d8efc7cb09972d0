"""De-identification of instances for providers (DICOM PS3.15 Annex E, Basic Profile).

The work is done by **dicognito** (a maintained, typed library on pydicom): every UID, person
name, patient/accession/order ID, institution and address is replaced, and every date and time is
shifted by one offset. Seeded with the provider's own secret seed, it replaces values the same way
for every instance, every redelivery and every study of that provider, and differently for each
provider, so that two providers cannot link their copies.

On top of dicognito, this module applies the Basic Profile actions dicognito leaves to the caller
(``EXTRA_REMOVED``, private attributes, overlays and curves), then every action of PS3.15 Table
E.1-1 as dicom-anonymizer transcribes it (X removed, Z emptied and D replaced by a dummy unless
dicognito replaced them already, U replaced by a UID derived from the seed), and records what was done
(DeidentificationMethodCodeSequence, PatientIdentityRemoved YES). Every comment and description
attribute and the Icon Image Sequence are removed. Kept on purpose:

- pixel data, unchanged (instances whose ``BurnedInAnnotation`` is YES or missing are refused,
  not sent);
- patient characteristics (sex, age, size, weight) a reader needs: Retain Patient Characteristics
  Option;
- intervals between dates (birth date to study date): Retain Longitudinal Temporal Information
  with Modified Dates Option;
- the image attributes a reader needs (laterality, view, spacing, window).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

#: PS3.15 Table E.1-1 attributes whose Basic Profile action is X (remove) and that dicognito keeps.
EXTRA_REMOVED: tuple[str, ...] = (
    "StudyDescription",
    "SeriesDescription",
    "ImageComments",
    "FrameComments",
    "PatientComments",
    "AdditionalPatientHistory",
    "AdmittingDiagnosesDescription",
    "MedicalAlerts",
    "Allergies",
    "EthnicGroup",
    "PatientState",
    "SpecialNeeds",
    "PatientInstitutionResidence",
    "ReasonForStudy",
    "RequestAttributesSequence",
    "RequestedProcedureDescription",
    "RequestedProcedureComments",
    "ReasonForTheRequestedProcedure",
    "ImagingServiceRequestComments",
    "ScheduledProcedureStepDescription",
    "PerformedProcedureStepDescription",
    "CommentsOnThePerformedProcedureStep",
    "ProtocolName",
    "DerivationDescription",
    "AcquisitionComments",
    "VisitComments",
    "ServiceEpisodeDescription",
    "DeviceSerialNumber",
    "PlateID",
    "DetectorID",
    "ReferencedPatientSequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PersonAddress",
    "PersonTelephoneNumbers",
    "TextString",
    "ContentSequence",
    "OriginalAttributesSequence",
    "ModifiedAttributesSequence",
    "EncryptedAttributesSequence",
    "DigitalSignaturesSequence",
    "MACParametersSequence",
    "IconImageSequence",
)
_EXTRA_REMOVED = frozenset(EXTRA_REMOVED)
_OVERLAY_AND_CURVE_GROUPS = range(0x5000, 0x6100)  # 50xx curves and 60xx overlays (may carry text)

#: CID 7050 codes for what was applied.
METHOD_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)


class DeidentificationError(ValueError):
    """An instance that cannot be de-identified safely (bad input: it is refused, not sent)."""


@dataclass(frozen=True)
class DeidentifiedInstance:
    """A de-identified Part 10 file and the identifiers it now carries."""

    data: bytes
    study_uid: str
    series_uid: str
    sop_uid: str
    accession_number: str


def deidentify(data: bytes, seed: str) -> DeidentifiedInstance:
    """De-identify one DICOM Part 10 file; the same ``seed`` gives the same replacements.

    Raises ``DeidentificationError`` for unreadable files and burned-in annotations.
    """
    from dicognito.anonymizer import Anonymizer

    try:
        dataset = dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError) as exc:
        raise DeidentificationError(f"DICOM ilegible / unreadable DICOM: {exc}") from exc
    if str(dataset.get("BurnedInAnnotation", "") or "").strip().upper() != "NO":
        # PS3.15 E.1: pixel data are kept as they are, so only an instance that states it carries no
        # burned-in text may leave; a missing or YES value is held, not sent.
        raise DeidentificationError(
            "La imagen tiene (o no declara que no tiene) anotaciones grabadas en los píxeles; no se"
            " envía a proveedores que piden datos anonimizados / burned-in annotation YES or not"
            " stated: not sent to de-identifying providers"
        )
    dataset.remove_private_tags()
    dataset.walk(_strip_extra)
    before = {element.tag: str(element.value) for element in dataset if element.VR != "SQ"}
    Anonymizer(seed=seed).anonymize(dataset)
    _apply_profile_table(dataset, before, seed)
    _record_method(dataset)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return DeidentifiedInstance(
        data=buffer.getvalue(),
        study_uid=str(dataset.StudyInstanceUID),
        series_uid=str(dataset.SeriesInstanceUID),
        sop_uid=str(dataset.SOPInstanceUID),
        accession_number=str(dataset.get("AccessionNumber", "") or ""),
    )


def _is_free_text(keyword: str) -> bool:
    """Comment and description attributes (free text a person typed) are all removed."""
    return keyword.endswith(("Comments", "Comment", "Description"))


def _strip_extra(dataset: Dataset, element: DataElement) -> None:
    if (
        element.keyword in _EXTRA_REMOVED
        or _is_free_text(element.keyword)
        or element.tag.group in _OVERLAY_AND_CURVE_GROUPS
    ):
        del dataset[element.tag]


#: Kept as they are (Retain Patient Characteristics Option, named in the method codes).
RETAINED_CHARACTERISTICS = frozenset({"PatientSex", "PatientAge", "PatientSize", "PatientWeight"})
#: Value representations dicognito replaces everywhere, consistently per seed (and dates by one shift).
_DICOGNITO_VRS = frozenset({"PN", "DA", "DT", "TM", "UI"})
_REMOVE, _EMPTY, _DUMMY, _UID = "remove", "empty", "dummy", "uid"
_TABLE_ACTIONS = {  # what each column of Table E.1-1 becomes here: removal wherever X is allowed
    "X_TAGS": _REMOVE, "X_Z_TAGS": _REMOVE, "X_D_TAGS": _REMOVE, "X_Z_D_TAGS": _REMOVE, "X_Z_U_STAR_TAGS": _REMOVE,
    "Z_TAGS": _EMPTY, "D_TAGS": _DUMMY, "Z_D_TAGS": _DUMMY, "U_TAGS": _UID,
}
_DUMMY_VALUES: dict[str, object] = {
    "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0", "UR": "http://anonimizado.invalid",
    "US": 0, "UL": 0, "SS": 0, "SL": 0, "FL": 0.0, "FD": 0.0, "SV": 0, "UV": 0,
}


@cache
def _profile_actions() -> tuple[dict[int, str], list[tuple[int, int, int, int, str]]]:
    from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table

    exact: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for category, action in _TABLE_ACTIONS.items():
        for entry in getattr(table, category):
            if len(entry) == 4:  # a repeating group: (group, element, group mask, element mask)
                masked.append((*entry, action))
            else:
                exact[(entry[0] << 16) | entry[1]] = action
    return exact, masked


def _action_for(tag: int) -> str | None:
    exact, masked = _profile_actions()
    if tag in exact:
        return exact[tag]
    group, element = tag >> 16, tag & 0xFFFF
    for base_group, base_element, group_mask, element_mask, action in masked:
        if group & group_mask == base_group & group_mask and element & element_mask == base_element & element_mask:
            return action
    return None


def _apply_profile_table(dataset: Dataset, before: dict[int, str], seed: str) -> None:
    from pydicom.uid import generate_uid

    top_level = dataset

    def apply(current: Dataset, element: DataElement) -> None:
        action = _action_for(int(element.tag))
        if action is None or element.keyword in RETAINED_CHARACTERISTICS:
            return
        untouched = current is top_level and before.get(element.tag) == str(element.value)
        if element.VR in ("DA", "DT", "TM") and not untouched:
            return  # shifted by dicognito: Retain Longitudinal Temporal Information Modified Dates Option
        if action == _REMOVE:
            del current[element.tag]
        elif action == _EMPTY:
            # Z allows a dummy too: what dicognito replaced (the accession number providers quote back) stays.
            replaced = (current is top_level and not untouched) or (current is not top_level and element.VR in _DICOGNITO_VRS)
            if element.VR == "SQ" or not replaced:
                element.value = [] if element.VR == "SQ" else None
        elif action == _UID:
            if element.VR == "UI" and untouched and element.value:
                element.value = generate_uid(prefix=None, entropy_srcs=[seed, str(element.value)])
        elif element.VR == "SQ":
            element.value = []  # a dummy sequence: no item of the original survives
        elif (current is top_level and not untouched) or (current is not top_level and element.VR in _DICOGNITO_VRS):
            return  # dicognito replaced it, consistently for this provider
        elif element.VR == "UI":
            element.value = generate_uid(prefix=None, entropy_srcs=[seed, str(element.value)])
        elif element.VR in _DUMMY_VALUES:
            element.value = _DUMMY_VALUES[element.VR]
        elif element.VR in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
            element.value = b"\x00\x00"
        elif element.VR == "AT":
            del current[element.tag]
        else:
            element.value = "ANONIMIZADO"

    dataset.walk(apply)


def _record_method(dataset: Dataset) -> None:
    # Only instances whose BurnedInAnnotation is NO get here, so the identity is removed.
    dataset.PatientIdentityRemoved = "YES"
    dataset.LongitudinalTemporalInformationModified = "MODIFIED"
    codes = []
    for value, meaning in METHOD_CODES:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
        codes.append(code)
    dataset.DeidentificationMethodCodeSequence = codes
