"""Keyset (cursor) pagination of the study list: stable when studies are added between pages."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from collections.abc import Mapping
from typing import Any, Literal

from fastapi import HTTPException
from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from services.status_api.tables import StudyRow

SortKey = Literal["-updated_at", "updated_at", "-created_at", "created_at", "triage"]

# Suspicious first: RED, YELLOW, GREEN, then studies not yet triaged (the table's generated column).
TRIAGE_RANK = col(StudyRow.triage_rank)


def sort_columns(sort: SortKey) -> list[tuple[Any, bool, str]]:
    """(SQL expression, descending?, kind) for each key of the order, study UID and hospital last as
    tie-breakers (a study is named by both: two hospitals may send the same UID)."""
    uid = [(col(StudyRow.study_uid), False, "str"), (col(StudyRow.hospital_id), False, "str")]
    if sort == "triage":
        return [(TRIAGE_RANK, False, "int"), (col(StudyRow.updated_at), True, "datetime"), *uid]
    field = col(StudyRow.updated_at) if sort.endswith("updated_at") else col(StudyRow.created_at)
    return [(field, sort.startswith("-"), "datetime"), *uid]


def order_by(sort: SortKey) -> list[Any]:
    """ORDER BY clauses for a sort key."""
    return [expr.desc() if desc else expr.asc() for expr, desc, _ in sort_columns(sort)]


def encode_cursor(sort: SortKey, values: list[Any]) -> str:
    """An opaque cursor after a row with these sort values."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps({"s": sort, "v": plain}).encode()).decode().rstrip("=")


def row_values(sort: SortKey, row: Mapping[str, Any]) -> list[Any]:
    """The sort values of a listed row (its columns by name), in the order of ``sort_columns``."""
    rank = {"RED": 0, "YELLOW": 1, "GREEN": 2}.get(row["triage_light"] or "", 3)
    if sort == "triage":
        return [rank, row["updated_at"], row["study_uid"], row["hospital_id"]]
    return [row["updated_at"] if sort.endswith("updated_at") else row["created_at"], row["study_uid"], row["hospital_id"]]


def after_cursor(sort: SortKey, cursor: str) -> ColumnElement[bool]:
    """WHERE condition selecting the rows after the cursor; 400 when the cursor is not ours."""
    invalid = HTTPException(400, "Cursor inválido / invalid cursor (use next_cursor with the same sort)")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        columns = sort_columns(sort)
        if data["s"] != sort or len(data["v"]) != len(columns):
            raise invalid
        values = [
            datetime.fromisoformat(v) if kind == "datetime" else int(v) if kind == "int" else str(v)
            for v, (_, _, kind) in zip(data["v"], columns)
        ]
    except HTTPException:
        raise
    except Exception as exc:  # any malformed cursor is the caller's mistake
        raise invalid from exc
    alternatives = []
    for i, (expr, desc, _) in enumerate(columns):
        equal_before = [columns[j][0] == values[j] for j in range(i)]
        beyond = expr < values[i] if desc else expr > values[i]
        alternatives.append(and_(*equal_before, beyond))
    return or_(*alternatives)
