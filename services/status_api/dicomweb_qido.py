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

__all__ = ["Level", "Query", "QueryError", "parse_query", "search"]

Level = Literal["study", "series", "instance"]
Row = InstanceIndexRow

DEFAULT_LIMIT: Final[int] = 100
MAX_LIMIT: Final[int] = 1000
CONTROL_KEYS: Final[frozenset[str]] = frozenset({"limit", "offset", "includefield", "fuzzymatching"})

_STUDY_ALL: Final[tuple[str, ...]] = (
    "IssuerOfPatientID",
    "PatientAge",
    "InstitutionName",
    "StudyDescription",
    "ReferringPhysicianName",
)
_SERIES_ALL: Final[tuple[str, ...]] = (
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "Manufacturer",
    "PresentationIntentType",
    "ImageLaterality",
)


@dataclass
class Query:
    """A parsed QIDO-RS request: SQL conditions, paging, extra return keys, ignored keys."""

    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    include_all: bool = False
    include_tags: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


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


def _extra(result: dict[str, Any], metadata: dict[str, Any], tags: Iterable[str]) -> None:
    for tag in tags:
        if tag not in result and tag in metadata and tag != PIXEL_DATA_TAG:
            result[tag] = metadata[tag]


def _sorted(result: dict[str, Any]) -> dict[str, Any]:
    return {tag: result[tag] for tag in sorted(result)}


def _tags(keywords: Iterable[str]) -> list[str]:
    return [f"{tag:08X}" for keyword in keywords if (tag := tag_for_keyword(keyword)) is not None]


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
    _extra(
        result, rows[0].metadata_json, query.include_tags + (_tags(_STUDY_ALL) if query.include_all else [])
    )
    return _sorted(result)


def series_result(rows: Sequence[Row], base_url: str, query: Query, with_study: bool) -> dict[str, Any]:
    """The QIDO-RS series-level answer for every indexed instance of one series."""
    first = rows[0]
    ds = Dataset()
    if with_study:
        _study_attributes(ds, rows)
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
    _extra(
        result, first.metadata_json, query.include_tags + (_tags(_SERIES_ALL) if query.include_all else [])
    )
    return _sorted(result)


def instance_result(row: Row, base_url: str, query: Query, with_study: bool) -> dict[str, Any]:
    """The QIDO-RS instance-level answer for one indexed instance."""
    ds = Dataset()
    if with_study:
        _study_attributes(ds, [row])
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
        return [instance_result(by_uid[key], base_url, query, with_study) for key in keys if key in by_uid]
    key_column = Row.study_uid if level == "study" else Row.series_uid
    groups: dict[str, list[Row]] = defaultdict(list)
    ordered = (
        select(Row).where(col(key_column).in_(keys), *scope).order_by(Row.series_number, Row.instance_number)
    )
    for row in session.exec(ordered).all():
        groups[row.study_uid if level == "study" else row.series_uid].append(row)
    if level == "study":
        return [study_result(groups[key], base_url, query) for key in keys if groups.get(key)]
    return [series_result(groups[key], base_url, query, with_study) for key in keys if groups.get(key)]
