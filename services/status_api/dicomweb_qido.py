"""QIDO-RS (DICOM PS3.18 §10.6) over the DICOMweb index: query keys to SQL, rows to DICOM JSON.

Matching (keyword or tag, e.g. ``PatientID`` or ``00100020``): UIDs by list (``a,b`` or ``a\\b``);
PatientName, PatientID, AccessionNumber, StudyDescription, StudyID, ReferringPhysicianName by
value or with the ``*`` and ``?`` wildcards (names and descriptions ignore case); StudyDate and
StudyTime by value or range (``20240101-20241231``, ``-20241231``, ``20240101-``);
ModalitiesInStudy / Modality, SOPClassUID, ImageLaterality and ViewPosition by list; SeriesNumber
and InstanceNumber by value. ``limit``, ``offset``, ``includefield`` (keywords, tags or ``all``)
and ``fuzzymatching`` (accepted, matching stays exact) are the controls. Keys the server does not
match on are ignored and named in a ``Warning: 299`` header, as the standard asks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from shared.instance_index import PIXEL_DATA_TAG, InstanceIndexRow
from shared.instance_query import MATCHING_KEYS, QueryError, condition_for, integer_value, keyword_of, tag_key, uid_values

__all__ = ["FUZZY_WARNING", "Level", "Query", "QueryError", "StudySummary", "parse_query", "search"]

Level = Literal["study", "series", "instance"]
Row = InstanceIndexRow

DEFAULT_LIMIT: Final[int] = 100
MAX_LIMIT: Final[int] = 1000
#: ``hospital`` narrows a caller who sees several hospitals to one (``dicomweb.one_hospital``).
CONTROL_KEYS: Final[frozenset[str]] = frozenset({"limit", "offset", "includefield", "fuzzymatching", "hospital"})

#: Attributes of the study level (Patient, General Study and Patient Study modules): the only ones a
#: study-level answer may carry, whatever ``includefield`` asks (PS3.18 10.6.3.3.1).
STUDY_LEVEL: Final[frozenset[str]] = frozenset(
    f"{tag:08X}"
    for keyword in (
        "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDsSequence", "PatientBirthDate", "PatientSex",
        "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup", "PatientComments", "StudyInstanceUID", "StudyDate",
        "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "IssuerOfAccessionNumberSequence",
        "StudyDescription", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "ProcedureCodeSequence",
        "AdmittingDiagnosesDescription", "ReasonForPerformedProcedureCodeSequence",
    )
    if (tag := tag_for_keyword(keyword)) is not None
)
#: Attributes of the series level (General Series, General Equipment, Frame of Reference, Series of DX/MG).
SERIES_LEVEL: Final[frozenset[str]] = frozenset(
    f"{tag:08X}"
    for keyword in (
        "Modality", "SeriesInstanceUID", "SeriesNumber", "Laterality", "SeriesDate", "SeriesTime", "SeriesDescription",
        "PerformingPhysicianName", "ProtocolName", "OperatorsName", "BodyPartExamined", "PatientPosition",
        "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "RequestAttributesSequence",
        "Manufacturer", "InstitutionName", "StationName", "ManufacturerModelName", "SoftwareVersions",
        "FrameOfReferenceUID", "PresentationIntentType",
    )
    if (tag := tag_for_keyword(keyword)) is not None
)
FUZZY_WARNING: Final[str] = "The fuzzymatching parameter is not supported. Only literal matching has been performed."


@dataclass
class Query:
    """A parsed QIDO-RS request: SQL conditions, paging, extra return keys, ignored keys."""

    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    include_all: bool = False
    include_tags: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    fuzzy_refused: bool = False


def parse_query(params: Iterable[tuple[str, str]]) -> Query:
    """A QIDO-RS query from the request's (key, value) pairs; raises ``QueryError`` on bad values."""
    query = Query()
    for name, raw in params:
        value = raw.strip()
        if name == "limit":
            query.limit = integer_value(value, "limit", 1, MAX_LIMIT)
        elif name == "offset":
            query.offset = integer_value(value, "offset", 0)
        elif name == "includefield":
            for item in uid_values(value):
                if item.lower() == "all":
                    query.include_all = True
                elif (tag := tag_key(item)) is not None:
                    query.include_tags.append(tag)
                else:
                    query.ignored.append(f"includefield={item}")
        elif name == "fuzzymatching":
            query.fuzzy_refused = value.lower() == "true"  # we match literally, and say so (PS3.18 8.3.4.5)
        elif name in CONTROL_KEYS:
            continue
        elif (keyword := keyword_of(name)) in MATCHING_KEYS:
            if value:
                query.conditions.append(condition_for(keyword, value))
            elif (tag := tag_key(name)) is not None:
                query.include_tags.append(tag)  # an empty key asks for the attribute to be returned
        else:
            query.ignored.append(name)
    return query


def page_keys(
    session: Session, level: Level, conditions: Sequence[ColumnElement[bool]], query: Query
) -> list[str]:
    """The study, series or SOP Instance UIDs of the requested page, in a stable order."""
    if level == "study":
        date, time = func.max(Row.study_date), func.max(Row.study_time)
        statement = (
            select(Row.study_uid, date, time)
            .where(*conditions)
            .group_by(Row.study_uid)
            .order_by(date.desc(), time.desc(), Row.study_uid)
        )
    elif level == "series":
        statement = (
            select(Row.series_uid, func.min(Row.series_number), func.min(Row.study_uid))
            .where(*conditions)
            .group_by(Row.series_uid)
            .order_by(func.min(Row.study_uid), func.min(Row.series_number), Row.series_uid)
        )
    else:
        statement = (
            select(Row.sop_instance_uid, Row.instance_number)
            .where(*conditions)
            .order_by(
                Row.study_uid, Row.series_number, Row.series_uid, Row.instance_number, Row.sop_instance_uid
            )
        )
    return [str(found[0]) for found in session.exec(statement.offset(query.offset).limit(query.limit)).all()]


def _json(ds: Dataset) -> dict[str, Any]:
    return ds.to_json_dict(suppress_invalid_tags=True)


def _study_attributes(ds: Dataset, rows: Sequence[Row]) -> None:
    first = rows[0]
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyDate, ds.StudyTime = first.study_date, first.study_time
    ds.AccessionNumber = first.accession_number
    ds.ReferringPhysicianName = first.referring_physician_name
    ds.PatientName, ds.PatientID = first.patient_name, first.patient_id
    ds.PatientBirthDate, ds.PatientSex = first.patient_birth_date, first.patient_sex
    ds.StudyInstanceUID, ds.StudyID = first.study_uid, first.study_id
    ds.StudyDescription = first.study_description


def _extra(result: dict[str, Any], metadata: dict[str, Any], tags: Iterable[str], allowed: frozenset[str] | None = None) -> None:
    """Add the requested attributes the stored header has; only those of ``allowed`` levels when given."""
    for tag in tags:
        if tag not in result and tag in metadata and tag != PIXEL_DATA_TAG and (allowed is None or tag in allowed):
            result[tag] = metadata[tag]


def _study_summary(ds: Dataset, summary: StudySummary | None) -> None:
    """The study's own counts and modalities, on a series or instance answer of a search across studies."""
    if summary is not None:
        ds.ModalitiesInStudy = summary.modalities
        ds.NumberOfStudyRelatedSeries = summary.series
        ds.NumberOfStudyRelatedInstances = summary.instances


def _sorted(result: dict[str, Any]) -> dict[str, Any]:
    return {tag: result[tag] for tag in sorted(result)}


@dataclass(frozen=True)
class StudySummary:
    """What a study holds in all: its modalities, series and instances."""

    modalities: list[str]
    series: int
    instances: int


def study_summaries(session: Session, study_uids: Iterable[str], scope: Sequence[ColumnElement[bool]]) -> dict[str, StudySummary]:
    """The summary of each study, in one query."""
    rows = session.exec(
        select(Row.study_uid, Row.series_uid, Row.modality).where(col(Row.study_uid).in_(sorted(set(study_uids))), *scope)
    ).all()
    series: dict[str, set[str]] = defaultdict(set)
    modalities: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for study_uid, series_uid, modality in rows:
        series[study_uid].add(series_uid)
        counts[study_uid] += 1
        if modality:
            modalities[study_uid].add(modality)
    return {uid: StudySummary(sorted(modalities[uid]), len(series[uid]), counts[uid]) for uid in counts}


def study_result(rows: Sequence[Row], base_url: str, query: Query) -> dict[str, Any]:
    """The QIDO-RS study-level answer for every indexed instance of one study."""
    ds = Dataset()
    _study_attributes(ds, rows)
    ds.ModalitiesInStudy = sorted({row.modality for row in rows if row.modality})
    ds.InstanceAvailability = "ONLINE"
    ds.RetrieveURL = f"{base_url}/studies/{rows[0].study_uid}"
    ds.NumberOfStudyRelatedSeries = len({row.series_uid for row in rows})
    ds.NumberOfStudyRelatedInstances = len(rows)
    result = _json(ds)
    _extra(result, rows[0].metadata_json, sorted(STUDY_LEVEL) if query.include_all else query.include_tags, STUDY_LEVEL)
    return _sorted(result)


def series_result(
    rows: Sequence[Row], base_url: str, query: Query, with_study: bool, summary: StudySummary | None = None
) -> dict[str, Any]:
    """The QIDO-RS series-level answer for every indexed instance of one series."""
    first = rows[0]
    ds = Dataset()
    if with_study:
        _study_attributes(ds, rows)
        _study_summary(ds, summary)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID = first.study_uid
    ds.Modality = first.modality
    ds.SeriesDescription = first.series_description
    ds.SeriesInstanceUID = first.series_uid
    ds.SeriesNumber = first.series_number if first.series_number is not None else ""
    ds.InstanceAvailability = "ONLINE"
    ds.RetrieveURL = f"{base_url}/studies/{first.study_uid}/series/{first.series_uid}"
    ds.NumberOfSeriesRelatedInstances = len(rows)
    result = _json(ds)
    levels = SERIES_LEVEL | STUDY_LEVEL
    _extra(result, first.metadata_json, sorted(SERIES_LEVEL) if query.include_all else query.include_tags, levels)
    return _sorted(result)


def instance_result(
    row: Row, base_url: str, query: Query, with_study: bool, summary: StudySummary | None = None
) -> dict[str, Any]:
    """The QIDO-RS instance-level answer for one indexed instance."""
    ds = Dataset()
    if with_study:
        _study_attributes(ds, [row])
        _study_summary(ds, summary)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = row.study_uid, row.series_uid
    ds.Modality = row.modality
    ds.SeriesNumber = row.series_number if row.series_number is not None else ""
    ds.SOPClassUID, ds.SOPInstanceUID = row.sop_class_uid, row.sop_instance_uid
    ds.InstanceNumber = row.instance_number if row.instance_number is not None else ""
    ds.InstanceAvailability = "ONLINE"
    ds.RetrieveURL = (
        f"{base_url}/studies/{row.study_uid}/series/{row.series_uid}/instances/{row.sop_instance_uid}"
    )
    if row.rows is not None and row.columns is not None:
        ds.Rows, ds.Columns = row.rows, row.columns
    if row.bits_allocated is not None:
        ds.BitsAllocated = row.bits_allocated
    ds.NumberOfFrames = row.number_of_frames
    if row.laterality:
        ds.ImageLaterality = row.laterality
    if row.view_position:
        ds.ViewPosition = row.view_position
    result = _json(ds)
    _extra(result, row.metadata_json, list(row.metadata_json) if query.include_all else query.include_tags)
    return _sorted(result)


def search(
    session: Session,
    level: Level,
    query: Query,
    base_url: str,
    scope: Sequence[ColumnElement[bool]],
    with_study: bool,
) -> list[dict[str, Any]]:
    """Run a QIDO-RS search at ``level`` within ``scope`` (path UIDs and allowed hospitals)."""
    keys = page_keys(session, level, [*scope, *query.conditions], query)
    if not keys:
        return []
    if level == "instance":
        found = session.exec(select(Row).where(col(Row.sop_instance_uid).in_(keys), *scope)).all()
        by_uid = {row.sop_instance_uid: row for row in found}
        summaries = study_summaries(session, (row.study_uid for row in found), scope) if with_study else {}
        return [
            instance_result(by_uid[key], base_url, query, with_study, summaries.get(by_uid[key].study_uid))
            for key in keys
            if key in by_uid
        ]
    key_column = Row.study_uid if level == "study" else Row.series_uid
    groups: dict[str, list[Row]] = defaultdict(list)
    ordered = (
        select(Row).where(col(key_column).in_(keys), *scope).order_by(Row.series_number, Row.instance_number)
    )
    for row in session.exec(ordered).all():
        groups[row.study_uid if level == "study" else row.series_uid].append(row)
    if level == "study":
        return [study_result(groups[key], base_url, query) for key in keys if groups.get(key)]
    summaries = study_summaries(session, (rows[0].study_uid for rows in groups.values()), scope) if with_study else {}
    return [
        series_result(groups[key], base_url, query, with_study, summaries.get(groups[key][0].study_uid))
        for key in keys
        if groups.get(key)
    ]
