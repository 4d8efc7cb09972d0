"""Sign-in (OAuth2 password flow), the caller's identity and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import OAuth2PasswordRequestForm
from sqlmodel import Session, col, select

from services.status_api.auth_tables import AuditRow
from services.status_api.schemas import AuditEntry, Me, TokenResponse
from services.status_api.security import AdminDep, PrincipalDep, authenticate_user, issue_token

router = APIRouter()
AUTH = "seguridad / security"


@router.post("/auth/token", response_model=TokenResponse, tags=[AUTH],
             responses={401: {"description": "Usuario o contraseña incorrectos / wrong username or password"}})
def login(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenResponse:
    """Intercambia usuario y contraseña por un token JWT / exchange username and password for a JWT."""
    ctx = request.app.state.ctx
    user = authenticate_user(ctx.engine, form.username, form.password)
    if user is None:
        raise HTTPException(401, "Usuario o contraseña incorrectos / wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    token, seconds = issue_token(request.app.state.jwt_secret, user.username, ctx.settings.auth_token_minutes,
                                 ctx.settings.auth_jwt_issuer, ctx.settings.auth_jwt_audience)
    return TokenResponse(access_token=token, expires_in=seconds)


@router.get("/auth/me", response_model=Me, tags=[AUTH])
def me(principal: PrincipalDep) -> Me:
    """Quién soy: rol, hospitales y proveedor / who am I: role, hospitals and provider."""
    return Me(**principal.model_dump())


@router.get("/audit", response_model=list[AuditEntry], tags=[AUTH])
def audit_log(
    request: Request,
    principal: AdminDep,
    study_uid: str | None = None,
    who: Annotated[str | None, Query(description="user:NOMBRE o apikey:NOMBRE / principal")] = None,
    since: Annotated[datetime | None, Query(description="Desde / since")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AuditRow]:
    """Bitácora de accesos a datos de pacientes, más recientes primero (solo administradores).

    Audit log of reads and writes of patient data, most recent first (administrators only).
    """
    query = select(AuditRow).order_by(col(AuditRow.id).desc()).limit(limit)
    if study_uid:
        query = query.where(AuditRow.study_uid == study_uid)
    if who:
        query = query.where(AuditRow.principal == who)
    if since:
        query = query.where(col(AuditRow.at) >= since)
    with Session(request.app.state.ctx.engine) as session:
        return list(session.exec(query).all())
