"""The status API's security tables: users, API keys, provider assignments, the audit log and sign-in throttling."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import JSON, Column, DateTime
from sqlmodel import Field, SQLModel

#: The roles, in one place: a new role is added here (and to the isolation matrix's columns).
#: ``uploader`` is write-only: it stores for its hospitals (``/uploads``, STOW-RS) and reads nothing.
Role = Literal["admin", "hospital_staff", "doctor", "provider", "uploader"]
ROLES: tuple[str, ...] = get_args(Role)
_UTC = DateTime(timezone=True)


class UserRow(SQLModel, table=True):
    """A person who signs in with a password (OAuth2 password flow)."""

    __tablename__ = "auth_user"

    username: str = Field(primary_key=True)
    password_hash: str
    role: str
    hospitals: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    provider_id: str | None = None
    active: bool = True
    created_at: datetime


class ApiKeyRow(SQLModel, table=True):
    """An integration's API key; only the SHA-256 of the key is stored."""

    __tablename__ = "auth_api_key"

    key_hash: str = Field(primary_key=True)
    name: str = Field(index=True)
    role: str
    hospitals: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    provider_id: str | None = None
    active: bool = True
    created_at: datetime
    expires_at: datetime | None = Field(default=None, sa_type=_UTC)  # type: ignore[call-overload]  # None: never


class AssignmentRow(SQLModel, table=True):
    """A study offered to a reading provider: the provider may see and report only these."""

    __tablename__ = "auth_assignment"

    hospital_id: str = Field(primary_key=True)
    study_uid: str = Field(primary_key=True)
    provider_id: str = Field(primary_key=True)
    assigned_by: str
    assigned_at: datetime


class AuditRow(SQLModel, table=True):
    """One read or write of patient data: who, with which role, did what, to which study, when, from where."""

    __tablename__ = "auth_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    principal: str = Field(index=True)
    role: str
    action: str
    study_uid: str | None = Field(default=None, index=True)
    hospital_id: str | None = Field(default=None, index=True)
    client: str = ""
    detail: str = ""


class LoginThrottleRow(SQLModel, table=True):
    """Failed sign-ins of one username (``user:NAME``) or one client address (``client:ADDRESS``) in the current
    window, and until when it is locked; shared by every replica of the API."""

    __tablename__ = "auth_login_throttle"

    subject: str = Field(primary_key=True)
    failures: int = 0
    window_started: datetime = Field(sa_type=_UTC)  # type: ignore[call-overload]
    locked_until: datetime | None = Field(default=None, sa_type=_UTC)  # type: ignore[call-overload]


AUTH_TABLES: list[type[SQLModel]] = [UserRow, ApiKeyRow, AssignmentRow, AuditRow, LoginThrottleRow]
