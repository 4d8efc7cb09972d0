"""Sign-in (OAuth2 password flow), the caller's identity and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm
from sqlmodel import Session, col, select

from shared.events import utc_now
from services.status_api.auth_tables import AuditRow
from services.status_api.login_throttle import Lockout, LoginThrottle, Subjects
from services.status_api.password_workers import PasswordWorkers
from services.status_api.schemas import AuditEntry, Me, TokenResponse
from services.status_api.security import AdminDep, PrincipalDep, authenticate_user, client_address, issue_token
from services.status_api.security import audit_log as audit_writer

router = APIRouter()
AUTH = "seguridad / security"


def login_throttle(request: Request) -> LoginThrottle:
    """The application's sign-in throttle (made on first use)."""
    state = request.app.state
    if getattr(state, "login_throttle", None) is None:
        state.login_throttle = LoginThrottle(state.ctx.engine, state.ctx.settings)
    return state.login_throttle  # type: ignore[no-any-return]


def password_workers(request: Request) -> PasswordWorkers:
    """The application's password threads (``MDD_AUTH_PASSWORD_WORKERS``, made on first use)."""
    state = request.app.state
    if getattr(state, "password_workers", None) is None:
        state.password_workers = PasswordWorkers(state.ctx.settings.auth_password_workers)
    return state.password_workers  # type: ignore[no-any-return]


async def _audit_sign_in(request: Request, username: str, action: str, lock: Lockout) -> None:
    await audit_writer(request).record_async({
        "at": utc_now(), "principal": f"user:{username[:200]}", "role": "", "action": action, "study_uid": None,
        "client": client_address(request), "detail": f"{lock.subject} hasta / until {lock.until.isoformat()}",
    })


def _locked_out(lock: Lockout) -> HTTPException:
    return HTTPException(429, lock.reason, headers={"Retry-After": str(lock.retry_after)})


@router.post("/auth/token", response_model=TokenResponse, tags=[AUTH],
             responses={401: {"description": "Usuario o contraseña incorrectos / wrong username or password"},
                        429: {"description": "Bloqueado tras demasiados fallos (Retry-After) / locked after too many "
                                             "failures (Retry-After)"},
                        503: {"description": "Demasiados inicios de sesión a la vez / too many sign-ins at once"}})
async def login(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenResponse:
    """Intercambia usuario y contraseña por un token JWT / exchange username and password for a JWT.

    ``MDD_AUTH_LOGIN_MAX_FAILURES`` wrong passwords for one username (``MDD_AUTH_LOGIN_MAX_CLIENT_FAILURES``
    from one address) within ``MDD_AUTH_LOGIN_WINDOW_MINUTES`` lock it for ``MDD_AUTH_LOGIN_LOCKOUT_MINUTES``:
    429 with ``Retry-After``, written to the audit log like every try refused while locked.
    """
    ctx = request.app.state.ctx
    throttle = login_throttle(request)
    subjects = Subjects.of(form.username, client_address(request))
    lock = await run_in_threadpool(throttle.locked, subjects)
    if lock is not None:
        await _audit_sign_in(request, form.username, "auth.login.refused", lock)
        raise _locked_out(lock)
    user = await password_workers(request).run(authenticate_user, ctx.engine, form.username, form.password)
    if user is None:
        started = await run_in_threadpool(throttle.failed, subjects)
        for lock in started:
            await _audit_sign_in(request, form.username, "auth.lockout", lock)
        if started:
            raise _locked_out(max(started, key=lambda lock: lock.until))
        raise HTTPException(401, "Usuario o contraseña incorrectos / wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    await run_in_threadpool(throttle.succeeded, subjects)
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
    hospital_id: str | None = None,
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
    if hospital_id:
        query = query.where(AuditRow.hospital_id == hospital_id)
    if who:
        query = query.where(AuditRow.principal == who)
    if since:
        query = query.where(col(AuditRow.at) >= since)
    with Session(request.app.state.ctx.engine) as session:
        return list(session.exec(query).all())
