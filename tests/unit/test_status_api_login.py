"""Sign-in throttling on ``POST /auth/token``: per username and per address, in the database, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, select

from shared.bus import MemoryBus
from shared.db import init_db, make_engine
from shared.events import utc_now
from shared.runtime import ServiceContext
from shared.settings import Settings
from shared.store import LocalStore
from services.status_api.api import create_app
from services.status_api.auth_tables import LoginThrottleRow
from services.status_api.security import create_user
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow

ADMIN = {"Authorization": "Bearer login-admin-key-0123456789abcdef"}
PASSWORD = "contraseña-segura-1"


def make_client(settings: Settings) -> TestClient:
    """One API replica over the settings' database."""
    settings.bootstrap_api_key = SecretStr(ADMIN["Authorization"].removeprefix("Bearer "))
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    return TestClient(create_app(ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir), engine)))


@pytest.fixture
def client(settings: Settings) -> TestClient:
    client = make_client(settings)
    for name in ("doctor_a", "staff_a"):
        create_user(client.app.state.ctx.engine, name, PASSWORD, "doctor", ["HOSP-A"])  # type: ignore[attr-defined]
    return client


def sign_in(client: TestClient, username: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return client.post("/auth/token", data={"username": username, "password": password})


def audit(client: TestClient, action: str) -> list[dict]:
    return [e for e in client.get("/audit", headers=ADMIN).json() if e["action"] == action]


def test_five_wrong_passwords_lock_the_username_with_429_retry_after_and_audit(client: TestClient) -> None:
    for _ in range(4):
        assert sign_in(client, "doctor_a", "incorrecta").status_code == 401
    locking = sign_in(client, "doctor_a", "incorrecta")
    assert locking.status_code == 429
    assert 890 <= int(locking.headers["retry-after"]) <= 900  # 15 minutes by default
    # Locked: even the right password is refused, with the reason in Spanish and English.
    refused = sign_in(client, "doctor_a")
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 900
    detail = refused.json()["detail"]
    assert "Demasiados intentos fallidos" in detail and "too many failed sign-ins" in detail and "este usuario" in detail
    assert sign_in(client, "doctor_a").status_code == 429
    # Another user from the same address is not locked by doctor_a's failures.
    assert sign_in(client, "staff_a").status_code == 200
    (lockout,) = audit(client, "auth.lockout")
    assert lockout["principal"] == "user:doctor_a" and lockout["client"] == "testclient"
    assert lockout["detail"].startswith("user:doctor_a")
    refusals = audit(client, "auth.login.refused")
    assert len(refusals) == 2 and {e["principal"] for e in refusals} == {"user:doctor_a"}


def test_a_successful_sign_in_resets_the_count(client: TestClient) -> None:
    for _ in range(4):
        assert sign_in(client, "doctor_a", "incorrecta").status_code == 401
    assert sign_in(client, "doctor_a").status_code == 200
    for _ in range(4):
        assert sign_in(client, "doctor_a", "incorrecta").status_code == 401
    assert sign_in(client, "doctor_a").status_code == 200
    assert audit(client, "auth.lockout") == []


def test_a_lock_ends_after_its_time_and_failures_outside_the_window_do_not_add_up(client: TestClient) -> None:
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    for _ in range(5):
        sign_in(client, "doctor_a", "incorrecta")
    assert sign_in(client, "doctor_a").status_code == 429
    with Session(engine) as session:  # fifteen minutes pass
        row = session.get(LoginThrottleRow, "user:doctor_a")
        assert row is not None and row.locked_until is not None
        row.locked_until = utc_now() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    assert sign_in(client, "doctor_a").status_code == 200
    for _ in range(4):
        assert sign_in(client, "doctor_a", "incorrecta").status_code == 401
    with Session(engine) as session:  # the window of those four failures passes
        row = session.get(LoginThrottleRow, "user:doctor_a")
        assert row is not None and row.failures == 4
        row.window_started = utc_now() - timedelta(minutes=16)
        session.add(row)
        session.commit()
    assert sign_in(client, "doctor_a", "incorrecta").status_code == 401  # counted as the first of a new window


def test_many_usernames_from_one_address_lock_the_address(settings: Settings) -> None:
    settings.auth_login_max_client_failures = 6
    client = make_client(settings)
    create_user(client.app.state.ctx.engine, "doctor_a", PASSWORD, "doctor", ["HOSP-A"])  # type: ignore[attr-defined]
    for index in range(5):
        assert sign_in(client, f"adivinado{index}", "x").status_code == 401  # unknown users cost a hash too
    assert sign_in(client, "adivinado5", "x").status_code == 429
    refused = sign_in(client, "doctor_a")
    assert refused.status_code == 429 and "esta dirección" in refused.json()["detail"]
    with Session(client.app.state.ctx.engine) as session:  # type: ignore[attr-defined]
        subjects = {row.subject for row in session.exec(select(LoginThrottleRow))}
    assert "client:testclient" in subjects


def test_replicas_on_one_database_share_the_count(settings: Settings) -> None:
    first = make_client(settings)
    create_user(first.app.state.ctx.engine, "doctor_a", PASSWORD, "doctor", ["HOSP-A"])  # type: ignore[attr-defined]
    second = make_client(settings)
    for replica in (first, second, first, second):
        assert sign_in(replica, "doctor_a", "incorrecta").status_code == 401
    assert sign_in(second, "doctor_a", "incorrecta").status_code == 429
    assert sign_in(first, "doctor_a").status_code == 429


def test_throttle_settings_have_sane_defaults() -> None:
    defaults = Settings()
    assert (defaults.auth_login_max_failures, defaults.auth_login_window_minutes, defaults.auth_login_lockout_minutes) == (5, 15, 15)
    with pytest.raises(ValueError):
        Settings(auth_login_max_failures=0)


def test_counts_whose_window_and_lock_are_over_are_dropped(client: TestClient) -> None:
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    long_ago = utc_now() - timedelta(hours=2)
    with Session(engine) as session:
        session.add(LoginThrottleRow(subject="user:olvidado", failures=3, window_started=long_ago))
        session.add(LoginThrottleRow(subject="user:bloqueado", failures=0, window_started=long_ago,
                                     locked_until=utc_now() + timedelta(minutes=5)))
        session.commit()
    assert sign_in(client, "doctor_a", "incorrecta").status_code == 401
    with Session(engine) as session:
        subjects = {row.subject for row in session.exec(select(LoginThrottleRow))}
    assert subjects == {"user:bloqueado", "user:doctor_a", "client:testclient"}
