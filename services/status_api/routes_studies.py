"""Study routes: list, detail, images, notifications, report intake and provider assignments.

Every query goes through ``security.scoped``/``visible_study`` so the hospital (or provider
assignment) restriction is part of the SQL, and every read or write of patient data is audited.
"""

from __future__ import annotations

import asyncio
import io
import logging
import mimetypes
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from PIL import Image
from pydicom import dcmread
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.events import StudyReported, producer, utc_now
from shared.reliability.outbox import record_events
from shared.object_keys import result_key
from services.status_api.auth_tables import AssignmentRow
from services.status_api.board import render_board
from services.status_api.identity import patient_identity
from services.status_api.pagination import SortKey, after_cursor, encode_cursor, order_by, row_values
from services.status_api.schemas import (
    AssignmentEntry, AssignmentRequest, NotificationEntry, ReportAccepted, ReportRequest, StudyDetailView, StudyPage,
    StudySummary, TimelineEntry, ViewImage,
)
from services.status_api.security import (
    AdminDep, HospitalQuery, PrincipalDep, REPORT_ROLES, audit, audit_async, scoped, study_scope, visible_study,
)
from services.status_api.state import STATUS_LABELS
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow
from services.status_api.visibility import notification_for, visible_payload

log = logging.getLogger("mdd.status_api")
router = APIRouter()
STUDIES = "estudios / studies"
IMAGE_KINDS = {"crop": "crop_key", "magma": "magma_key", "mask": "mask_key"}
NOT_FOUND = {
    404: {"description": "Estudio no encontrado o de otro hospital / study not found or of another hospital"},
    409: {"description": "El UID existe en varios hospitales visibles: indique ?hospital_id= / the UID exists in several"
                         " visible hospitals: give ?hospital_id="},
}


def get_session(request: Request):  # type: ignore[no-untyped-def]
    """A database session per request."""
    engine: Engine = request.app.state.ctx.engine
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


#: The columns the list shows (``StudySummary`` without its label), read without building ORM objects.
SUMMARY_COLUMNS = [
    getattr(StudyRow, name) for name in StudySummary.model_fields if name != "state_label"
]


def summary(row: StudyRow) -> dict:
    """A study row as the list shows it."""
    data = row.model_dump()
    data["state_label"] = STATUS_LABELS.get(row.state, row.state)
    return data


@router.get("/studies", response_model=StudyPage, tags=[STUDIES],
            responses={400: {"description": "Cursor inválido / invalid cursor"}})
def list_studies(
    request: Request,
    principal: PrincipalDep,
    hospital_id: Annotated[str | None, Query(description="Hospital / hospital id")] = None,
    state: Annotated[str | None, Query(description="Estado / state (receiving, ready, notified…)")] = None,
    triage_light: Annotated[Literal["RED", "YELLOW", "GREEN", "NONE"] | None, Query(description="Semáforo de triaje; NONE = sin triaje / triage light")] = None,
    status_light: Annotated[Literal["RED", "YELLOW", "GREEN"] | None, Query(description="Semáforo de estado / status light")] = None,
    overdue: Annotated[bool | None, Query(description="Solo retrasados (o no) / only overdue (or not)")] = None,
    created_from: Annotated[datetime | None, Query(description="Creado desde (incl.) / created at or after")] = None,
    created_to: Annotated[datetime | None, Query(description="Creado antes de / created before")] = None,
    updated_from: Annotated[datetime | None, Query(description="Actualizado desde (incl.) / updated at or after")] = None,
    updated_to: Annotated[datetime | None, Query(description="Actualizado antes de / updated before")] = None,
    sort: Annotated[SortKey, Query(description="Orden; triage = sospechosos primero / order; triage = suspicious first")] = "-updated_at",
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor de la página anterior / previous page's next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Estudios por página / page size")] = 100,
) -> Response:
    """Estudios visibles para quien llama, con filtros, orden y paginación por cursor.

    Studies the caller may see, filtered, sorted and paginated with an opaque cursor.
    """
    query = scoped(select(*SUMMARY_COLUMNS), principal)
    equal = [(StudyRow.hospital_id, hospital_id), (StudyRow.state, state), (StudyRow.status_light, status_light),
             (StudyRow.overdue, overdue)]
    for column, value in equal:
        if value is not None:
            query = query.where(col(column) == value)
    for column, since, until in [(StudyRow.created_at, created_from, created_to), (StudyRow.updated_at, updated_from, updated_to)]:
        if since is not None:
            query = query.where(col(column) >= since)
        if until is not None:
            query = query.where(col(column) < until)
    if triage_light == "NONE":
        query = query.where(col(StudyRow.triage_light).is_(None))
    elif triage_light:
        query = query.where(col(StudyRow.triage_light) == triage_light)
    if cursor:
        query = query.where(after_cursor(sort, cursor))
    with request.app.state.ctx.engine.connect() as connection:  # only the list's columns, no ORM objects
        rows = list(connection.execute(query.order_by(*order_by(sort)).limit(limit + 1)).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    audit(request, principal, "study.list", detail=f"{len(rows)} estudios / studies")
    page = StudyPage(  # rows of the table's own columns: built without validating them again
        items=[StudySummary.model_construct(**row, state_label=STATUS_LABELS.get(row["state"], row["state"])) for row in rows],
        next_cursor=encode_cursor(sort, row_values(sort, rows[-1])) if more and rows else None,
    )
    # Serialised once here (pydantic-core); FastAPI would validate the page a second time.
    return Response(page.model_dump_json(), media_type="application/json")


def _image_url(request: Request, row: StudyRow, view: dict, kind: str) -> str | None:
    key = view.get(IMAGE_KINDS[kind])
    if not key:
        return None
    ctx = request.app.state.ctx
    presigned = ctx.store.url_for(ctx.settings.bucket_derived, key)
    if presigned:
        return presigned  # type: ignore[no-any-return]
    url = request.url_for("study_image", study_uid=row.study_uid, sop_instance_uid=view["sop_instance_uid"], kind=kind)
    return str(url.include_query_params(hospital_id=row.hospital_id))


@router.get("/studies/{study_uid}", response_model=StudyDetailView, responses=NOT_FOUND, tags=[STUDIES])
async def get_study(
    study_uid: str, request: Request, session: SessionDep, principal: PrincipalDep, hospital_id: HospitalQuery = None
) -> dict:
    """Un estudio: línea de tiempo, miniaturas, salidas de IA e identidad si el rol lo permite.

    One study: timeline, thumbnails, AI outputs, and patient identity when the role allows it.
    """
    row = visible_study(session, principal, study_uid, hospital_id)
    events = session.exec(
        select(StudyEventRow).where(StudyEventRow.hospital_id == row.hospital_id, StudyEventRow.study_uid == study_uid)
        .order_by(col(StudyEventRow.occurred_at))
    ).all()
    detail = summary(row)
    detail["events"] = [
        TimelineEntry.model_validate({**event.model_dump(), "payload": visible_payload(principal, event.payload)})
        for event in events
    ]
    detail["thumbnails"] = [
        ViewImage(
            sop_instance_uid=view["sop_instance_uid"], laterality=view.get("laterality"), view_position=view.get("view_position"),
            crop_url=_image_url(request, row, view, "crop"), magma_url=_image_url(request, row, view, "magma"),
            mask_url=_image_url(request, row, view, "mask"),
        )
        for view in row.derived_views or []
    ]
    if principal.sees_identity:
        ctx = request.app.state.ctx
        detail["patient"] = await asyncio.to_thread(patient_identity, ctx.store, ctx.settings, row.hospital_id, row.study_uid)
    await audit_async(request, principal, "study.read", study_uid,
          "con identidad / with identity" if principal.sees_identity else "sin identidad / without identity", row.hospital_id)
    return detail


@router.get(
    "/studies/{study_uid}/images/{sop_instance_uid}/{kind}", name="study_image", responses=NOT_FOUND, tags=[STUDIES],
    response_class=Response,
)
def study_image(
    study_uid: str, sop_instance_uid: str, kind: Literal["crop", "magma", "mask"], request: Request, session: SessionDep,
    principal: PrincipalDep, hospital_id: HospitalQuery = None,
) -> Response:
    """Una imagen derivada de una vista (almacén local) / one derived image of a view (local store)."""
    row = visible_study(session, principal, study_uid, hospital_id)
    view = next((v for v in row.derived_views or [] if v.get("sop_instance_uid") == sop_instance_uid), None)
    if view is None or not view.get(IMAGE_KINDS[kind]):
        raise HTTPException(404, f"Vista no encontrada / view not found: {sop_instance_uid}")
    ctx = request.app.state.ctx
    key = view[IMAGE_KINDS[kind]]
    try:
        data = ctx.store.get_bytes(ctx.settings.bucket_derived, key)
    except KeyError as exc:
        raise HTTPException(404, f"Imagen no encontrada / image not found: {key}") from exc
    audit(request, principal, "study.image", study_uid, f"{sop_instance_uid} {kind}", row.hospital_id)
    return Response(data, media_type=mimetypes.guess_type(key)[0] or "application/octet-stream")


MOSAIC_KEY = "overlay.dcm"  # kept in the results bucket by the notify service, next to the SRs it sends to the PACS


@router.get(
    "/studies/{study_uid}/mosaic", name="study_mosaic", tags=[STUDIES], response_class=Response,
    responses={**NOT_FOUND, 200: {"description": "Mosaico PNG / PNG mosaic", "content": {"image/png": {}}}},
)
def study_mosaic(
    study_uid: str, request: Request, session: SessionDep, principal: PrincipalDep, hospital_id: HospitalQuery = None
) -> Response:
    """Las cuatro vistas con las marcas del modelo, el mismo mosaico que va al PACS / the four views with the
    model's marks: the mosaic that goes to the PACS (PNG; no patient identity in it)."""
    row = visible_study(session, principal, study_uid, hospital_id)
    ctx = request.app.state.ctx
    try:
        data = ctx.store.get_bytes(ctx.settings.bucket_results, result_key(row.hospital_id, row.study_uid, MOSAIC_KEY))
    except (KeyError, ValueError) as exc:
        raise HTTPException(404, "Mosaico aún no disponible / mosaic not available yet") from exc
    pixels = dcmread(io.BytesIO(data)).pixel_array
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    audit(request, principal, "study.image", study_uid, "mosaic", row.hospital_id)
    return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/studies/{study_uid}/notifications", response_model=list[NotificationEntry], responses=NOT_FOUND,
            tags=["notificaciones / notifications"])
def study_notifications(
    study_uid: str, request: Request, session: SessionDep, principal: PrincipalDep, hospital_id: HospitalQuery = None
) -> list[dict]:
    """Bitácora de notificaciones de un estudio / a study's notification log."""
    study = visible_study(session, principal, study_uid, hospital_id)
    query = (
        select(NotificationRow).where(NotificationRow.hospital_id == study.hospital_id, NotificationRow.study_uid == study_uid)
        .order_by(col(NotificationRow.occurred_at))
    )
    rows = [notification_for(principal, row.model_dump()) for row in session.exec(query).all()]
    audit(request, principal, "study.notifications", study_uid, hospital_id=study.hospital_id)
    return rows


@router.get("/notifications", response_model=list[NotificationEntry], tags=["notificaciones / notifications"])
def list_notifications(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    study_uid: str | None = None,
    status: Annotated[str | None, Query(pattern="^(sent|failed)$", description="sent o failed")] = None,
    hospital_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict]:
    """Bitácora de notificaciones visible para quien llama, más recientes primero / notification log, most recent first."""
    query = select(NotificationRow).order_by(col(NotificationRow.occurred_at).desc()).limit(limit)
    scope = study_scope(principal)
    if scope is not None:
        visible = select(StudyRow.study_uid).where(
            scope, col(StudyRow.hospital_id) == col(NotificationRow.hospital_id), col(StudyRow.study_uid) == col(NotificationRow.study_uid)
        )
        query = query.where(visible.exists())
    if study_uid:
        query = query.where(NotificationRow.study_uid == study_uid)
    if status:
        query = query.where(NotificationRow.status == status)
    if hospital_id:
        query = query.where(NotificationRow.hospital_id == hospital_id)
    rows = [notification_for(principal, row.model_dump()) for row in session.exec(query).all()]
    audit(request, principal, "notifications.list", study_uid)
    return rows


@router.post(
    "/studies/{study_uid}/report", response_model=ReportAccepted, status_code=202,
    responses={**NOT_FOUND, 403: {"description": "Rol sin permiso de reportar / role may not report"}}, tags=[STUDIES],
)
async def report_study(
    study_uid: str, report: ReportRequest, request: Request, session: SessionDep, principal: PrincipalDep,
    hospital_id: HospitalQuery = None,
) -> ReportAccepted:
    """Recibe el reporte (BI-RADS y texto) de un médico, administrador o proveedor asignado y publica ``study.reported``.

    Takes a report from a doctor, administrator or assigned provider and publishes ``study.reported``.
    """
    if principal.role not in REPORT_ROLES:
        raise HTTPException(403, "Sin permiso para reportar / this role may not report")
    row = visible_study(session, principal, study_uid, hospital_id)
    reporter = f"{principal.kind}:{principal.name}" + (f" ({principal.provider_id})" if principal.provider_id else "")
    event = StudyReported(
        study_uid=row.study_uid, hospital_id=row.hospital_id, correlation_id=row.correlation_id or row.study_uid,
        accession_number=row.accession_number, producer=producer("status_api"), birads=report.birads, text=report.text,
        reporter=reporter,
    )
    ctx = request.app.state.ctx
    await asyncio.to_thread(record_events, ctx.engine, [event])  # the report is kept before it is acknowledged
    try:
        await ctx.bus.outbox.flush([str(event.event_id)])
    except Exception as exc:  # recorded in the outbox: the relay publishes it once the broker is back
        log.warning("Reporte guardado, publicación pendiente / report kept, publication pending: %r", exc)
    await audit_async(request, principal, "study.report", study_uid, f"BI-RADS {report.birads}", row.hospital_id)
    return ReportAccepted(event_id=str(event.event_id), study_uid=study_uid, birads=report.birads, reporter=reporter)


@router.post("/studies/{study_uid}/assignments", response_model=AssignmentEntry, status_code=201, responses=NOT_FOUND,
             tags=[STUDIES])
def assign_study(
    study_uid: str, assignment: AssignmentRequest, request: Request, session: SessionDep, principal: AdminDep,
    hospital_id: HospitalQuery = None,
) -> AssignmentEntry:
    """Asigna el estudio a un proveedor de lectura (solo administradores) / assign the study to a reading provider (admins)."""
    study = visible_study(session, principal, study_uid, hospital_id)
    row = session.get(AssignmentRow, (study.hospital_id, study_uid, assignment.provider_id))
    if row is None:
        row = AssignmentRow(hospital_id=study.hospital_id, study_uid=study_uid, provider_id=assignment.provider_id,
                            assigned_by=principal.name, assigned_at=utc_now())
        session.add(row)
        session.commit()
        session.refresh(row)
    entry = AssignmentEntry.model_validate(row.model_dump())
    audit(request, principal, "study.assign", study_uid, assignment.provider_id, study.hospital_id)
    return entry




@router.get("/board/table", response_class=HTMLResponse, include_in_schema=False)
def board_table(request: Request, session: SessionDep, principal: PrincipalDep) -> str:
    """El tablero de semáforos de quien llama (lo carga la página ``/``) / the caller's board (loaded by ``/``)."""
    rows = session.exec(scoped(select(StudyRow), principal).order_by(col(StudyRow.updated_at).desc()).limit(200)).all()
    audit(request, principal, "study.list", detail="tablero / board")
    return render_board([summary(row) for row in rows])
