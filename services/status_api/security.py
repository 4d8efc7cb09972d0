"""Who is calling and what they may see: passwords, JWTs, API keys, roles, hospital scope, audit.

Both session tokens (JWT from ``POST /auth/token``) and integration API keys travel as
``Authorization: Bearer <token>``. Scoping happens in SQL: ``scope_studies`` adds the principal's
hospitals (or provider assignments) to the query's WHERE clause.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

import jwt
from fastapi import Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from pwdlib import PasswordHash
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from shared.db import init_db
from shared.events import utc_now
from shared.settings import Settings
from services.status_api.audit_log import AuditLog
from services.status_api.auth_tables import AUTH_TABLES, ROLES, ApiKeyRow, AssignmentRow, Role, UserRow
from services.status_api.tables import StudyRow

JWT_ALGORITHM = "HS256"
API_KEY_PREFIX = "mdd_"
IDENTITY_ROLES = frozenset({"admin", "doctor"})
REPORT_ROLES = frozenset({"admin", "doctor", "provider"})
#: Who may store instances (``/uploads``, STOW-RS), for the hospitals of their scope.
STORE_ROLES = frozenset({"admin", "doctor", "uploader"})
WRITE_ONLY_ROLES = frozenset({"uploader"})

_hasher = PasswordHash.recommended()
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


class Principal(BaseModel):
    """The authenticated caller: a signed-in user or an integration's API key."""

    name: str
    kind: Literal["user", "apikey"]
    role: Role
    hospitals: list[str] = []
    provider_id: str | None = None
    expires_at: datetime | None = None  # the session token's expiry, or the API key's (None: never)

    @property
    def hospital_scope(self) -> set[str] | None:
        """The hospitals this principal acts for; ``None`` for an administrator (every one)."""
        return None if self.role == "admin" else set(self.hospitals)

    @property
    def sees_identity(self) -> bool:
        """Doctors and administrators may see patient name, ID and CURP."""
        return self.role in IDENTITY_ROLES


class AuthError(ValueError):
    """A user or key cannot be created as asked."""


class TokenRefused(Exception):
    """A known token that may no longer be used (an expired API key); ``reason`` says why, Spanish first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def as_utc(moment: datetime) -> datetime:
    """``moment`` with its time zone (SQLite gives stored UTC times back without one)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def hash_password(password: str) -> str:
    """Argon2 hash of a password."""
    return _hasher.hash(password)


def hash_api_key(key: str) -> str:
    """SHA-256 of an API key: keys are long random strings, so a fast hash is enough to look them up."""
    return hashlib.sha256(key.encode()).hexdigest()


def _check_role(role: str, hospitals: list[str], provider_id: str | None) -> None:
    if role not in ROLES:
        raise AuthError(f"Rol inválido / invalid role: {role} ({', '.join(ROLES)})")
    if role in ("hospital_staff", "doctor", "uploader") and not hospitals:
        raise AuthError("Este rol necesita al menos un hospital / this role needs at least one hospital")
    if role == "provider" and not provider_id:
        raise AuthError("Un proveedor necesita su id de proveedor / a provider needs its provider id")


def create_user(
    engine: Engine, username: str, password: str, role: str, hospitals: list[str], provider_id: str | None = None
) -> UserRow:
    """Create (or replace) a user with a hashed password."""
    _check_role(role, hospitals, provider_id)
    if len(password) < 8:
        raise AuthError("La contraseña necesita 8 caracteres o más / password needs at least 8 characters")
    init_db(engine, AUTH_TABLES)
    with Session(engine) as session:
        row = UserRow(
            username=username, password_hash=hash_password(password), role=role, hospitals=hospitals,
            provider_id=provider_id, created_at=utc_now(),
        )
        session.merge(row)
        session.commit()
    return row


def create_api_key(
    engine: Engine, name: str, role: str, hospitals: list[str], provider_id: str | None = None, key: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Create an API key and return it; it is shown only now, the database keeps its hash.

    ``expires_at`` (a time zone-less time is UTC): from then on the key is refused; None = never.
    """
    _check_role(role, hospitals, provider_id)
    if expires_at is not None:
        expires_at = as_utc(expires_at)
        if expires_at <= utc_now():
            raise AuthError(f"La fecha de vencimiento ya pasó / the expiry is in the past: {expires_at.isoformat()}")
    key = key or API_KEY_PREFIX + secrets.token_urlsafe(32)
    init_db(engine, AUTH_TABLES)
    with Session(engine) as session:
        session.merge(
            ApiKeyRow(key_hash=hash_api_key(key), name=name, role=role, hospitals=hospitals, provider_id=provider_id,
                      created_at=utc_now(), expires_at=expires_at)
        )
        session.commit()
    return key


def deactivate_api_keys(engine: Engine, name: str) -> int:
    """Deactivate every API key called ``name``; how many were active. Refused from then on (cached: within
    ``MDD_AUTH_CACHE_SECONDS``), and their open streams are closed."""
    with Session(engine) as session:
        rows = list(session.exec(select(ApiKeyRow).where(ApiKeyRow.name == name, col(ApiKeyRow.active).is_(True))))
        for row in rows:
            row.active = False
            session.add(row)
        session.commit()
    return len(rows)


def ensure_bootstrap_key(engine: Engine, settings: Settings) -> bool:
    """Create the admin key ``MDD_BOOTSTRAP_API_KEY`` when set and no admin key exists; True if created."""
    if settings.bootstrap_api_key is None or not settings.bootstrap_api_key.get_secret_value():
        return False
    with Session(engine) as session:
        if session.exec(select(ApiKeyRow).where(ApiKeyRow.role == "admin")).first() is not None:
            return False
    create_api_key(engine, "bootstrap", "admin", [], key=settings.bootstrap_api_key.get_secret_value())
    return True


def jwt_secret(settings: Settings) -> str:
    """The JWT signing secret: the configured one (at least 32 characters, checked by the settings), or a
    random one for this process."""
    if settings.auth_jwt_secret is not None and settings.auth_jwt_secret.get_secret_value():
        return settings.auth_jwt_secret.get_secret_value()
    return secrets.token_urlsafe(48)


def authenticate_user(engine: Engine, username: str, password: str) -> UserRow | None:
    """The active user with this password, or None."""
    with Session(engine) as session:
        user = session.get(UserRow, username)
    if user is None or not user.active:
        _hasher.hash(password)  # same work either way, so timing does not reveal which usernames exist
        return None
    return user if _hasher.verify(password, user.password_hash) else None


def issue_token(secret: str, username: str, minutes: int, issuer: str, audience: str) -> tuple[str, int]:
    """A signed JWT for ``username`` (with issuer and audience) and its lifetime in seconds."""
    now = utc_now()
    claims = {"sub": username, "iat": now, "exp": now + timedelta(minutes=minutes), "typ": "access", "iss": issuer,
              "aud": audience}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), minutes * 60


def unauthorized(reason: str) -> HTTPException:
    """401 with ``WWW-Authenticate: Bearer`` and the reason."""
    return HTTPException(401, f"No autenticado / not authenticated: {reason}", headers={"WWW-Authenticate": "Bearer"})


def resolve_principal(engine: Engine, secret: str, token: str, issuer: str, audience: str) -> Principal | None:
    """The principal behind a bearer token (API key, or a JWT of this issuer for this audience), or None.

    Raises ``TokenRefused`` for a deactivated user, or an API key that is deactivated or past its expiry.
    """
    with Session(engine) as session:
        key = session.get(ApiKeyRow, hash_api_key(token))
        if key is not None:
            if not key.active:
                raise TokenRefused("la llave de API está desactivada / the API key is deactivated")
            expires_at = as_utc(key.expires_at) if key.expires_at is not None else None
            if expires_at is not None and expires_at <= utc_now():
                raise TokenRefused(f"la llave de API venció el {expires_at.isoformat()} / the API key expired on "
                                   f"{expires_at.isoformat()}")
            return Principal(name=key.name, kind="apikey", role=key.role, hospitals=key.hospitals,  # type: ignore[arg-type]
                             provider_id=key.provider_id, expires_at=expires_at)
        try:
            claims = jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], issuer=issuer, audience=audience,
                                options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.PyJWTError:
            return None
        user = session.get(UserRow, str(claims["sub"]))
        if user is None:
            return None
        if not user.active:
            raise TokenRefused("el usuario está desactivado / the user is deactivated")
        return Principal(name=user.username, kind="user", role=user.role, hospitals=user.hospitals,  # type: ignore[arg-type]
                         provider_id=user.provider_id, expires_at=datetime.fromtimestamp(float(claims["exp"]), timezone.utc))


INVALID_TOKEN = "token inválido o vencido / invalid or expired token"


def principal_of(state: object, token: str) -> Principal:
    """The principal behind ``token`` for the application whose ``app.state`` is given, looked up now (no cache).

    Raises ``TokenRefused`` with the reason when the token is not (or no longer) honoured.
    """
    settings = state.ctx.settings  # type: ignore[attr-defined]
    principal = resolve_principal(state.ctx.engine, state.jwt_secret, token, settings.auth_jwt_issuer,  # type: ignore[attr-defined]
                                  settings.auth_jwt_audience)
    if principal is None:
        raise TokenRefused(INVALID_TOKEN)
    return principal


class PrincipalCache:
    """Recently resolved bearer tokens, so that a busy client is not looked up in the database on every call.

    An entry lives ``ttl_seconds`` (never past the token's or key's expiry): a deactivated key or user is
    refused within that time. Tokens are kept by their SHA-256; invalid tokens are never cached.
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, token: str) -> Principal | None:
        """The cached principal of a token, or None when unknown or stale."""
        entry = self._entries.get(hash_api_key(token))
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def put(self, token: str, principal: Principal) -> None:
        """Remember a valid token's principal."""
        if self.ttl_seconds <= 0:
            return
        lifetime = self.ttl_seconds
        if principal.expires_at is not None:
            lifetime = min(lifetime, principal.expires_at.timestamp() - time.time())
        if lifetime <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[hash_api_key(token)] = (principal, time.monotonic() + lifetime)


def principal_cache(request: Request) -> PrincipalCache:
    """The application's principal cache (made on first use, ``MDD_AUTH_CACHE_SECONDS``)."""
    state = request.app.state
    if getattr(state, "principal_cache", None) is None:
        state.principal_cache = PrincipalCache(state.ctx.settings.auth_cache_seconds)
    return state.principal_cache  # type: ignore[no-any-return]


async def authenticated_principal(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal:
    """FastAPI dependency: the authenticated caller, whatever its role, or 401 with ``WWW-Authenticate: Bearer``."""
    if not token:
        raise unauthorized("falta el token / missing bearer token")
    cache = principal_cache(request)
    principal = cache.get(token)
    if principal is None:
        try:
            principal = await run_in_threadpool(principal_of, request.app.state, token)
        except TokenRefused as refused:
            raise unauthorized(refused.reason) from None
        cache.put(token, principal)
    request.state.principal = principal
    return principal


async def current_principal(principal: Annotated[Principal, Depends(authenticated_principal)]) -> Principal:
    """FastAPI dependency of every route that reads: the authenticated caller; write-only keys get 403.

    Reusable by any router of the status API (e.g. DICOMweb): ``Depends(current_principal)``.
    """
    refuse_write_only(principal)
    return principal


def refuse_write_only(principal: Principal) -> None:
    """403 for a write-only role (``uploader``) on anything that reads."""
    if principal.role in WRITE_ONLY_ROLES:
        raise HTTPException(403, "Llave solo para cargar (/uploads, STOW-RS) / upload-only key: it reads nothing")


async def storing_principal(principal: Annotated[Principal, Depends(authenticated_principal)]) -> Principal:
    """FastAPI dependency of the routes that store: roles in ``STORE_ROLES`` only (403 otherwise)."""
    if principal.role not in STORE_ROLES:
        raise HTTPException(403, f"Sin permiso para almacenar / not allowed to store: requiere / requires {', '.join(sorted(STORE_ROLES))}")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str):  # type: ignore[no-untyped-def]
    """A dependency that lets only the given roles through (403 otherwise)."""

    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise HTTPException(403, f"Sin permiso / forbidden: requiere / requires {', '.join(roles)}")
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require_roles("admin"))]


def study_scope(principal: Principal) -> ColumnElement[bool] | None:
    """The SQL condition on ``StudyRow`` a principal may see; None means every study (admin)."""
    if principal.role == "admin":
        return None
    if principal.role == "provider":
        # Assigned studies only: the same UID in another hospital is another study, never assigned with it.
        assigned = select(AssignmentRow.hospital_id).where(
            AssignmentRow.provider_id == (principal.provider_id or ""),
            col(AssignmentRow.hospital_id) == col(StudyRow.hospital_id), col(AssignmentRow.study_uid) == col(StudyRow.study_uid),
        )
        return assigned.exists()
    return col(StudyRow.hospital_id).in_(principal.hospitals)


def scoped(query, principal: Principal):  # type: ignore[no-untyped-def]
    """``query`` over ``StudyRow`` restricted to what the principal may see."""
    condition = study_scope(principal)
    return query if condition is None else query.where(condition)


HospitalQuery = Annotated[str | None, Query(
    description="Hospital del estudio, cuando el mismo UID existe en varios / the study's hospital, when the same UID exists in several",
    max_length=64,
)]


def visible_study(session: Session, principal: Principal, study_uid: str, hospital_id: str | None = None) -> StudyRow:
    """The study if it exists and the principal may see it; 404 otherwise (so existence does not leak).

    A UID is unique only within a hospital: when the principal sees studies of several hospitals with
    this UID and names none, the answer is 409 with the hospitals to choose from (all visible to it).
    """
    query = scoped(select(StudyRow).where(StudyRow.study_uid == study_uid), principal)
    if hospital_id:
        query = query.where(StudyRow.hospital_id == hospital_id)
    rows = session.exec(query.order_by(col(StudyRow.hospital_id)).limit(10)).all()
    if not rows:
        raise HTTPException(404, f"Estudio no encontrado / study not found: {study_uid}")
    if len(rows) > 1:
        hospitals = ", ".join(row.hospital_id for row in rows)
        raise HTTPException(409, f"El UID existe en varios hospitales ({hospitals}); indique ?hospital_id= / "
                                 f"the UID exists in several hospitals: give ?hospital_id=")
    return rows[0]


def client_address(request: Request) -> str:
    """The caller's address as the server sees it."""
    return request.client.host if request.client else ""


def _audit_entry(
    request: Request, principal: Principal, action: str, study_uid: str | None, detail: str, hospital_id: str | None = None
) -> dict[str, object]:
    return {"at": utc_now(), "principal": f"{principal.kind}:{principal.name}", "role": principal.role, "action": action,
            "study_uid": study_uid, "hospital_id": hospital_id, "client": client_address(request), "detail": detail}


def audit_log(request: Request) -> AuditLog:
    """The application's audit writer (made on first use)."""
    state = request.app.state
    if getattr(state, "audit_log", None) is None:
        state.audit_log = AuditLog(state.ctx.engine)
    return state.audit_log  # type: ignore[no-any-return]


def audit(
    request: Request, principal: Principal, action: str, study_uid: str | None = None, detail: str = "",
    hospital_id: str | None = None,
) -> None:
    """Record a read or write of patient data; returns once the entry is committed."""
    audit_log(request).record(_audit_entry(request, principal, action, study_uid, detail, hospital_id))


async def audit_async(
    request: Request, principal: Principal, action: str, study_uid: str | None = None, detail: str = "",
    hospital_id: str | None = None,
) -> None:
    """``audit`` for coroutines (does not block the event loop while the entry is committed)."""
    await audit_log(request).record_async(_audit_entry(request, principal, action, study_uid, detail, hospital_id))
