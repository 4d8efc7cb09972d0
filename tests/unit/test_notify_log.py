"""The notification log of the status API, built only from ``notification.sent`` events."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from shared.bus import MemoryBus
from shared.db import init_db, make_engine
from shared.events import NotificationSent, StudyFailed, StudyInferred, producer, utc_now
from shared.runtime import ServiceContext
from shared.settings import Settings
from shared.store import LocalStore
from services.status_api.api import create_app
from services.status_api.projector import project
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow
from tests.unit.test_notify_rules import inferred

def sent(study_uid: str, recipient: str, status: str = "sent", minutes: int = 0, channel: str = "email") -> NotificationSent:
    return NotificationSent(
        study_uid=study_uid, hospital_id="H", correlation_id="c", producer=producer("notify"), accession_number="A1",
        occurred_at=utc_now() + timedelta(minutes=minutes), rule="triage_red", channel=channel, recipient=recipient, status=status,
        detail="" if status == "sent" else "503 Service Unavailable",
    )


ADMIN_KEY = "clave-admin-de-prueba-0123456789"


def client(settings: Settings) -> tuple[TestClient, Engine]:
    settings = settings.model_copy(update={"bootstrap_api_key": SecretStr(ADMIN_KEY)})
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    ctx = ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir), engine)
    return TestClient(create_app(ctx), headers={"Authorization": f"Bearer {ADMIN_KEY}"}), engine


def study(uid: str) -> StudyInferred:
    return inferred("RED").model_copy(update={"study_uid": uid, "event_id": uuid4()})


def test_a_studys_notifications_are_listed_in_order_once_each(settings: Settings) -> None:
    http, engine = client(settings)
    project(engine, study("1.1"))
    second, first = sent("1.1", "onco <+526461110001>", "failed", minutes=2, channel="sms"), sent("1.1", "onco <onco@h.mx>")
    assert project(engine, second) and project(engine, first)
    assert not project(engine, first)  # redelivered: still one entry
    log = http.get("/studies/1.1/notifications").json()
    assert [(e["recipient"], e["channel"], e["status"]) for e in log] == [
        ("onco <onco@h.mx>", "email", "sent"),
        ("onco <+526461110001>", "sms", "failed"),
    ]
    assert log[1]["detail"] == "503 Service Unavailable" and log[0]["event_id"] == str(first.event_id)
    assert http.get("/studies/1.1").json()["state"] == "notified"
    missing = http.get("/studies/9.9/notifications")
    assert missing.status_code == 404 and "no encontrado / study not found" in missing.json()["detail"]


def test_the_log_is_filtered_by_study_and_status_most_recent_first(settings: Settings) -> None:
    http, engine = client(settings)
    for event in [sent("1.1", "a", minutes=1), sent("1.1", "b", "failed", minutes=2), sent("1.2", "c", "failed", minutes=3)]:
        project(engine, event)
    assert [e["recipient"] for e in http.get("/notifications").json()] == ["c", "b", "a"]
    assert [e["recipient"] for e in http.get("/notifications", params={"status": "failed"}).json()] == ["c", "b"]
    assert [e["recipient"] for e in http.get("/notifications", params={"study_uid": "1.1", "status": "failed"}).json()] == ["b"]
    assert http.get("/notifications", params={"study_uid": "1.3"}).json() == []
    assert http.get("/notifications", params={"status": "lost"}).status_code == 422


def test_telling_it_about_a_failure_does_not_make_the_study_notified(settings: Settings) -> None:
    http, engine = client(settings)
    project(engine, StudyFailed(study_uid="1.4", hospital_id="H", correlation_id="c", producer=producer("preprocess"), stage="preprocess", reason="x"))
    project(engine, sent("1.4", "it <ti@h.mx>"))
    body = http.get("/studies/1.4").json()
    assert (body["state"], body["status_light"]) == ("failed", "RED")
    assert [e["recipient"] for e in http.get("/studies/1.4/notifications").json()] == ["it <ti@h.mx>"]
