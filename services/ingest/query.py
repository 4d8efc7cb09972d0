"""Query/Retrieve over what we hold (PS3.4 Annex C): the stored studies and our AI results for them.

C-FIND, C-MOVE and C-GET identifiers are matched with the same rules QIDO-RS uses
(:mod:`shared.instance_query`: single value, UID list, wildcard, date/time range) on the index of
stored instances, within one hospital: the calling AE title's (``MDD_SENDERS``), so that a
workstation of one hospital never sees another's patients. Our results for a study (CAD SR, SR,
mosaic, kept in the results bucket) are part of the study: they are found at series and image
level and retrieved with it.

Levels: Patient Root (PATIENT, STUDY, SERIES, IMAGE) and Study Root (STUDY, SERIES, IMAGE).
Hierarchical queries only: a level below the top needs the unique keys of the levels above it
(PS3.4 C.4.1.2.1), otherwise the identifier is refused (0xA900).
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.datadict import tag_for_keyword
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.instance_index import InstanceIndexRow, row_from_header
from shared.instance_query import MATCHING_KEYS, QueryError, condition_for, uid_values
from shared.store import ObjectStore
from shared.object_keys import study_prefix

log = logging.getLogger("mdd.ingest.query")
Row = InstanceIndexRow
Level = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
Model = Literal["PATIENT", "STUDY"]

LEVELS: Final[dict[Model, tuple[Level, ...]]] = {
    "PATIENT": ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    "STUDY": ("STUDY", "SERIES", "IMAGE"),
}
UNIQUE_KEYS: Final[dict[Level, str]] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
#: Keys of each level (PS3.4 C.6.1.1 and C.6.2.1) that we match on or return.
LEVEL_KEYS: Final[dict[Level, frozenset[str]]] = {
    "PATIENT": frozenset({"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "IssuerOfPatientID",
                          "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"}),
    "STUDY": frozenset({"StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyInstanceUID", "ReferringPhysicianName",
                        "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"}),
    "SERIES": frozenset({"Modality", "SeriesNumber", "SeriesInstanceUID", "SeriesDescription", "NumberOfSeriesRelatedInstances"}),
    "IMAGE": frozenset({"InstanceNumber", "SOPInstanceUID", "SOPClassUID", "ImageLaterality", "ViewPosition", "Rows", "Columns"}),
}
#: Keys a result object (not in the index) is matched on in memory; the others are the study's.
_RESULT_MATCH: Final[dict[str, str]] = {
    "SeriesInstanceUID": "series_uid", "SOPInstanceUID": "sop_instance_uid", "SOPClassUID": "sop_class_uid", "Modality": "modality",
}
_COLUMNS: Final[dict[str, str]] = {
    "PatientName": "patient_name", "PatientID": "patient_id", "PatientBirthDate": "patient_birth_date", "PatientSex": "patient_sex",
    "StudyDate": "study_date", "StudyTime": "study_time", "AccessionNumber": "accession_number", "StudyID": "study_id",
    "StudyInstanceUID": "study_uid", "ReferringPhysicianName": "referring_physician_name", "StudyDescription": "study_description",
    "Modality": "modality", "SeriesNumber": "series_number", "SeriesInstanceUID": "series_uid", "SeriesDescription": "series_description",
    "InstanceNumber": "instance_number", "SOPInstanceUID": "sop_instance_uid", "SOPClassUID": "sop_class_uid",
    "ImageLaterality": "laterality", "ViewPosition": "view_position", "Rows": "rows", "Columns": "columns",
}


class IdentifierError(ValueError):
    """The identifier cannot be matched (answered 0xA900 with the reason)."""


@dataclass(frozen=True)
class Located:
    """A matched instance and where its object lives."""

    row: Row
    bucket: str


@dataclass(frozen=True)
class Holdings:
    """Where stored instances and our results are: the index and the two buckets."""

    engine: Engine
    store: ObjectStore
    dicom_bucket: str
    results_bucket: str


def level_of(identifier: Dataset, model: Model) -> Level:
    """The Query/Retrieve Level of an identifier, checked against the information model."""
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in LEVELS[model]:
        raise IdentifierError(f"Nivel inválido / invalid Query/Retrieve Level {level!r} for {model} root")
    return level  # type: ignore[return-value]


def _value(identifier: Dataset, keyword: str) -> str:
    value = identifier.get(keyword, None)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _conditions(identifier: Dataset, level: Level, model: Model, hospital_id: str, allowed_levels: tuple[Level, ...]) -> list:
    levels = LEVELS[model]
    above = levels[: levels.index(level)]
    for upper in above:
        if not _value(identifier, UNIQUE_KEYS[upper]):
            raise IdentifierError(f"Falta la clave única / missing unique key {UNIQUE_KEYS[upper]} above {level} level")
        if upper != "PATIENT" and len(uid_values(_value(identifier, UNIQUE_KEYS[upper]))) != 1:
            raise IdentifierError(f"{UNIQUE_KEYS[upper]} debe ser un solo UID / must be a single UID above {level} level")
    conditions = [col(Row.hospital_id) == hospital_id]
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword not in MATCHING_KEYS or not any(keyword in LEVEL_KEYS[lv] for lv in allowed_levels):
            continue
        raw = _value(identifier, keyword)
        if raw and raw != "*":
            try:
                conditions.append(condition_for(keyword, raw))
            except QueryError as exc:
                raise IdentifierError(str(exc)) from exc
    return conditions


def _results_of(holdings: Holdings, study_uid: str, hospital_id: str) -> list[Located]:
    """Our results for a study, read from the results bucket (headers only)."""
    found = []
    for key in holdings.store.list_keys(holdings.results_bucket, study_prefix(hospital_id, study_uid)):
        if not key.endswith(".dcm"):
            continue
        try:
            raw = holdings.store.get_bytes(holdings.results_bucket, key)
            header = dcmread(io.BytesIO(raw), stop_before_pixels=True)
        except Exception as exc:
            log.warning("Resultado ilegible / unreadable result %s: %r", key, exc)
            continue
        found.append(Located(row_from_header(header, hospital_id, key, len(raw)), holdings.results_bucket))
    return found


def _result_matches(identifier: Dataset, row: Row) -> bool:
    for keyword, attribute in _RESULT_MATCH.items():
        raw = _value(identifier, keyword)
        if raw and raw != "*" and str(getattr(row, attribute)) not in uid_values(raw):
            return False
    return True


def matching_instances(holdings: Holdings, identifier: Dataset, model: Model, hospital_id: str) -> tuple[Level, list[Located]]:
    """Every instance (stored or a result) under the identifier's matches, at its level."""
    level = level_of(identifier, model)
    levels = LEVELS[model]
    with Session(holdings.engine) as session:
        rows = list(session.exec(select(Row).where(*_conditions(identifier, level, model, hospital_id, levels[: levels.index(level) + 1]))).all())
        # Studies matched on patient and study keys alone: their results belong to them whatever the series keys say.
        study_keys = [lv for lv in levels[: levels.index(level) + 1] if lv in ("PATIENT", "STUDY")]
        study_rows = (
            session.exec(select(Row.study_uid).where(*_conditions(identifier, study_keys[-1], model, hospital_id, tuple(study_keys)))).all()
            if study_keys else []
        )
    located = [Located(row, holdings.dicom_bucket) for row in rows]
    for study_uid in sorted(set(study_rows)):
        located += [found for found in _results_of(holdings, study_uid, hospital_id) if _result_matches(identifier, found.row)]
    return level, located


def _key(level: Level, row: Row) -> str:
    return {"PATIENT": row.patient_id, "STUDY": row.study_uid, "SERIES": row.series_uid, "IMAGE": row.sop_instance_uid}[level]


def find(holdings: Holdings, identifier: Dataset, model: Model, hospital_id: str, retrieve_ae: str) -> Iterator[Dataset]:
    """The C-FIND responses of an identifier: one dataset per matching entity at its level."""
    level, located = matching_instances(holdings, identifier, model, hospital_id)
    groups: dict[str, list[Row]] = defaultdict(list)
    for item in located:
        groups[_key(level, item.row)].append(item.row)
    for key in sorted(groups):
        yield _response(identifier, level, groups[key], retrieve_ae)


def _response(identifier: Dataset, level: Level, rows: list[Row], retrieve_ae: str) -> Dataset:
    """The identifier's keys, filled from the group of rows of one entity."""
    first = rows[0]
    computed: dict[str, object] = {
        "QueryRetrieveLevel": level,
        "RetrieveAETitle": retrieve_ae,
        "InstanceAvailability": "ONLINE",
        "ModalitiesInStudy": sorted({r.modality for r in rows if r.modality}),
        "NumberOfStudyRelatedSeries": len({r.series_uid for r in rows}),
        "NumberOfStudyRelatedInstances": len(rows),
        "NumberOfSeriesRelatedInstances": len(rows),
        "NumberOfPatientRelatedStudies": len({r.study_uid for r in rows}),
        "NumberOfPatientRelatedSeries": len({r.series_uid for r in rows}),
        "NumberOfPatientRelatedInstances": len(rows),
    }
    answer = Dataset()
    answer.SpecificCharacterSet = "ISO_IR 192"
    metadata: Dataset | None = None
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword == "SpecificCharacterSet":
            continue
        if keyword in computed:
            setattr(answer, keyword, computed[keyword])
        elif keyword in _COLUMNS and getattr(first, _COLUMNS[keyword]) is not None:
            setattr(answer, keyword, getattr(first, _COLUMNS[keyword]))
        else:
            if metadata is None:  # the stored header, for the keys the index has no column for
                metadata = _header_of(first)
            if keyword in metadata and tag_for_keyword(keyword) != 0x7FE00010:
                answer[keyword] = metadata[keyword]
            else:
                answer.add_new(element.tag, element.VR, None)  # a key we hold no value for: returned empty
    answer.QueryRetrieveLevel = level
    for upper in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if upper in identifier and upper not in answer:
            setattr(answer, upper, getattr(first, _COLUMNS[upper]))
    return answer


def _header_of(row: Row) -> Dataset:
    if not row.metadata_json:
        return Dataset()
    return Dataset.from_json(row.metadata_json, bulk_data_uri_handler=lambda *_: b"")


def retrieve(holdings: Holdings, identifier: Dataset, model: Model, hospital_id: str) -> list[Located]:
    """The instances a C-MOVE or C-GET identifier asks for (no PATIENT-level C-GET of everything by accident:
    the identifier's unique keys decide)."""
    level = level_of(identifier, model)
    if not _value(identifier, UNIQUE_KEYS[level]):
        raise IdentifierError(f"Falta la clave única / missing unique key {UNIQUE_KEYS[level]} for a {level} retrieve")
    _, located = matching_instances(holdings, identifier, model, hospital_id)
    return located


def read_instance(holdings: Holdings, item: Located) -> Dataset:
    """The stored object of a matched instance, as received (file meta included)."""
    return dcmread(io.BytesIO(holdings.store.get_bytes(item.bucket, item.row.object_key)))
