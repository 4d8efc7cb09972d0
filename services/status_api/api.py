"""REST routes of the status API and the traffic-light board."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.runtime import ServiceContext
from services.status_api.board import render_board
from services.status_api.schemas import Health, NotificationEntry, StudyDetail, StudySummary, TimelineEntry
from services.status_api.state import STATUS_LABELS
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow

router = APIRouter()


def get_session(request: Request):  # type: ignore[no-untyped-def]
    """A database session per request."""
    engine: Engine = request.app.state.ctx.engine
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _summary(row: StudyRow) -> dict:
    data = row.model_dump()
    data["state_label"] = STATUS_LABELS.get(row.state, row.state)
    return data


@router.get("/healthz", response_model=Health, tags=["salud / health"])
def healthz(request: Request) -> Health:
    """Vivo y listo / alive and ready."""
    ready = bool(request.app.state.ctx.ready.get("all"))
    return Health(status="ok", ready=ready)


@router.get("/studies", response_model=list[StudySummary], tags=["estudios / studies"])
def list_studies(
    session: SessionDep,
    hospital_id: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict]:
    """Estudios más recientes primero / most recent studies first."""
    query = select(StudyRow).order_by(col(StudyRow.updated_at).desc()).limit(limit)
    if hospital_id:
        query = query.where(StudyRow.hospital_id == hospital_id)
    if state:
        query = query.where(StudyRow.state == state)
    return [_summary(row) for row in session.exec(query).all()]


@router.get("/studies/{study_uid}", response_model=StudyDetail, tags=["estudios / studies"])
def get_study(study_uid: str, session: SessionDep) -> dict:
    """Un estudio con su línea de tiempo / one study with its timeline."""
    row = session.get(StudyRow, study_uid)
    if row is None:
        raise HTTPException(404, f"Estudio no encontrado / study not found: {study_uid}")
    events = session.exec(
        select(StudyEventRow).where(StudyEventRow.study_uid == study_uid).order_by(col(StudyEventRow.occurred_at))
    ).all()
    detail = _summary(row)
    detail["events"] = [TimelineEntry.model_validate(event.model_dump()) for event in events]
    return detail


@router.get("/studies/{study_uid}/notifications", response_model=list[NotificationEntry], tags=["notificaciones / notifications"])
def study_notifications(study_uid: str, session: SessionDep) -> list[NotificationRow]:
    """Bitácora de notificaciones de un estudio / a study's notification log."""
    if session.get(StudyRow, study_uid) is None:
        raise HTTPException(404, f"Estudio no encontrado / study not found: {study_uid}")
    query = select(NotificationRow).where(NotificationRow.study_uid == study_uid).order_by(col(NotificationRow.occurred_at))
    return list(session.exec(query).all())


@router.get("/notifications", response_model=list[NotificationEntry], tags=["notificaciones / notifications"])
def list_notifications(
    session: SessionDep,
    study_uid: str | None = None,
    status: Annotated[str | None, Query(pattern="^(sent|failed)$")] = None,
    hospital_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[NotificationRow]:
    """Bitácora de notificaciones, más recientes primero / notification log, most recent first."""
    query = select(NotificationRow).order_by(col(NotificationRow.occurred_at).desc()).limit(limit)
    if study_uid:
        query = query.where(NotificationRow.study_uid == study_uid)
    if status:
        query = query.where(NotificationRow.status == status)
    if hospital_id:
        query = query.where(NotificationRow.hospital_id == hospital_id)
    return list(session.exec(query).all())


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def board(session: SessionDep) -> str:
    """El tablero de semáforos / the traffic-light board."""
    rows = session.exec(select(StudyRow).order_by(col(StudyRow.updated_at).desc()).limit(200)).all()
    return render_board([_summary(row) for row in rows])


def create_app(ctx: ServiceContext) -> FastAPI:
    """The FastAPI application over a service context."""
    app = FastAPI(
        title="Mexican Deep DICOM — API de estado / status API",
        version="0.1.0",
        description="Semáforos de estudios de mastografía / traffic lights of mammography studies.",
    )
    app.state.ctx = ctx
    app.include_router(router)
    return app
