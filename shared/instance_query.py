"""Matching stored instances by DICOM attribute values, once for QIDO-RS and C-FIND (PS3.4 C.2.2.2, PS3.18 8.3.4).

Attribute keys (keyword or tag) become SQL conditions on :class:`shared.instance_index.InstanceIndexRow`:
UIDs by list (``a,b`` or ``a\\b``); PatientName, PatientID, AccessionNumber, StudyDescription,
StudyID, ReferringPhysicianName by value or with the ``*`` and ``?`` wildcards (names and
descriptions ignore case); StudyDate and StudyTime by value or range (``20240101-20241231``,
``-20241231``, ``20240101-``); ModalitiesInStudy / Modality, SOPClassUID, ImageLaterality and
ViewPosition by list; SeriesNumber and InstanceNumber by value.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from shared.instance_index import InstanceIndexRow

Row = InstanceIndexRow

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

class QueryError(ValueError):
    """A query key has a value that cannot be matched (answered 400)."""


def tag_key(name: str) -> str | None:
    """The 8-hex-digit tag of a keyword or tag string, None when it is neither."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        return name.upper()
    tag = tag_for_keyword(name)
    return None if tag is None else f"{tag:08X}"


def keyword_of(name: str) -> str:
    """The keyword of a keyword or tag string (the string itself when it is neither)."""
    tag = tag_key(name)
    return (keyword_for_tag(int(tag, 16)) or name) if tag else name


def uid_values(raw: str) -> list[str]:
    """The values of a list match (comma or backslash separated)."""
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


def integer_value(raw: str, name: str, minimum: int, maximum: int | None = None) -> int:
    """``raw`` as an integer within bounds; raises :class:`QueryError`."""
    try:
        value = int(raw)
    except ValueError as exc:
        raise QueryError(f"{name} debe ser un entero / {name} must be an integer: {raw!r}") from exc
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise QueryError(f"{name} fuera de rango / {name} out of range ({bounds}): {value}")
    return value


def condition_for(keyword: str, raw: str) -> ColumnElement[bool]:
    """The SQL condition that matches ``keyword`` against the value ``raw``; raises :class:`QueryError`."""
    if keyword in _UID_LIST:
        return col(_UID_LIST[keyword]).in_(uid_values(raw))
    if keyword in _WILDCARD:
        column, ignore_case = _WILDCARD[keyword]
        if "*" in raw or "?" in raw:
            return _like(column, raw, ignore_case)
        return (func.lower(column) == raw.lower()) if ignore_case else (column == raw)
    if keyword in _RANGE:
        column, side = _RANGE[keyword]
        return _range(column, raw, side, keyword)
    return _NUMBER[keyword] == integer_value(raw, keyword, 0)


