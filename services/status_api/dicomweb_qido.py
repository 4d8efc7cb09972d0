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

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from services.status_api.dicomweb_index import PIXEL_DATA_TAG, InstanceIndexRow

Level = Literal["study", "series", "instance"]
Row = InstanceIndexRow

DEFAULT_LIMIT: Final[int] = 100
MAX_LIMIT: Final[int] = 1000
CONTROL_KEYS: Final[frozenset[str]] = frozenset({"limit", "offset", "includefield", "fuzzymatching"})

_UID_LIST: Final[dict[str, Any]] = {
    "StudyInstanceUID": Row.study_uid,
    "SeriesInstanceUID": Row.series_uid,
    "SOPInstanceUID": Row.sop_instance_uid,
    "SOPClassUID": Row.sop_class_uid,
    "ModalitiesInStudy": Row.modality,
    "Modality": Row.modality,
    "ImageLaterality": Row.laterality,
    "ViewPosition": Row.view_position,
}
_WILDCARD: Final[dict[str, tuple[Any, bool]]] = {  # column, ignore case
    "PatientName": (Row.patient_name, True),
    "PatientID": (Row.patient_id, False),
    "AccessionNumber": (Row.accession_number, False),
    "StudyDescription": (Row.study_description, True),
    "StudyID": (Row.study_id, False),
    "ReferringPhysicianName": (Row.referring_physician_name, True),
}
_RANGE: Final[dict[str, tuple[Any, str]]] = {  # column, pattern of one side
    "StudyDate": (Row.study_date, r"\d{8}"),
    "StudyTime": (Row.study_time, r"\d{2,6}(\.\d{1,6})?"),
}
_NUMBER: Final[dict[str, Any]] = {"SeriesNumber": Row.series_number, "InstanceNumber": Row.instance_number}
MATCHING_KEYS: Final[frozenset[str]] = frozenset({*_UID_LIST, *_WILDCARD, *_RANGE, *_NUMBER})

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


class QueryError(ValueError):
    """A query key has a value that cannot be matched (answered 400)."""


@dataclass
class Query:
    """A parsed QIDO-RS request: SQL conditions, paging, extra return keys, ignored keys."""

    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    include_all: bool = False
    include_tags: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def tag_key(name: str) -> str | None:
    """The 8-hex-digit tag of a keyword or tag string, None when it is neither."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        return name.upper()
    tag = tag_for_keyword(name)
    return None if tag is None else f"{tag:08X}"


def _keyword(name: str) -> str:
    tag = tag_key(name)
    return (keyword_for_tag(int(tag, 16)) or name) if tag else name


def _values(raw: str) -> list[str]:
    return [value.strip() for value in re.split(r"[,\\]", raw) if value.strip()]


def _like(column: Any, pattern: str, ignore_case: bool) -> ColumnElement[bool]:
    escaped = pattern.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    like = escaped.replace("*", "%").replace("?", "_")
    if ignore_case:
        return func.lower(column).like(like.lower(), escape="!")
    return column.like(like, escape="!")


def _range(column: Any, raw: str, side: str, keyword: str) -> ColumnElement[bool]:
    low, dash, high = raw.partition("-")
    for part in (low, high):
        if part and not re.fullmatch(side, part):
            raise QueryError(f"Valor inválido de {keyword} / invalid {keyword} value: {raw!r}")
    if not dash:
        return column == low
    if not low and not high:
        raise QueryError(f"Rango vacío de {keyword} / empty {keyword} range")
    condition = column != ""
    if low:
        condition = condition & (column >= low)
    if high:
        if keyword == "StudyTime" and "." not in high:
            # Inclusive end (PS3.4 C.2.2.2.5): "1300" reaches 13:00:59.999999.
            high = high.ljust(6, "9") + ".999999"
        condition = condition & (column <= high)
    return condition


def _integer(raw: str, name: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise QueryError(f"{name} debe ser un entero / {name} must be an integer: {raw!r}") from exc
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise QueryError(f"{name} fuera de rango / {name} out of range ({bounds}): {value}")
    return value


def _condition(keyword: str, raw: str) -> ColumnElement[bool]:
    if keyword in _UID_LIST:
        return col(_UID_LIST[keyword]).in_(_values(raw))
    if keyword in _WILDCARD:
        column, ignore_case = _WILDCARD[keyword]
        if "*" in raw or "?" in raw:
            return _like(column, raw, ignore_case)
        return (func.lower(column) == raw.lower()) if ignore_case else (column == raw)
    if keyword in _RANGE:
        column, side = _RANGE[keyword]
        return _range(column, raw, side, keyword)
    return _NUMBER[keyword] == _integer(raw, keyword, 0)


def parse_query(params: Iterable[tuple[str, str]]) -> Query:
    """A QIDO-RS query from the request's (key, value) pairs; raises ``QueryError`` on bad values."""
    query = Query()
    for name, raw in params:
        value = raw.strip()
        if name == "limit":
            query.limit = _integer(value, "limit", 1, MAX_LIMIT)
        elif name == "offset":
            query.offset = _integer(value, "offset", 0)
        elif name == "includefield":
            for item in _values(value):
                if item.lower() == "all":
                    query.include_all = True
                elif (tag := tag_key(item)) is not None:
                    query.include_tags.append(tag)
                else:
                    query.ignored.append(f"includefield={item}")
        elif name in CONTROL_KEYS:
            continue
        elif (keyword := _keyword(name)) in MATCHING_KEYS:
            if value:
                query.conditions.append(_condition(keyword, value))
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
