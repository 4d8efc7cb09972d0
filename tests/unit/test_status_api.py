"""The status API over a real SQLite database: projection, idempotency, routes."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pydantic import SecretStr

from shared.bus import MemoryBus
from shared.db import init_db, make_engine
from shared.events import InstanceStored, StudyCompleted, producer
from shared.runtime import ServiceContext
from shared.settings import Settings
from shared.store import LocalStore
from services.status_api.api import create_app
from services.status_api.projector import project
from services.status_api.tables import StudyEventRow, StudyRow

ADMIN_KEY = "unit-admin-key-0123456789"
ENVELOPE = dict(study_uid="1.2.840.1", hospital_id="HGE", correlation_id="corr", producer=producer("ingest"), accession_number="A1")


def client_and_engine(settings: Settings):  # type: ignore[no-untyped-def]
    settings.bootstrap_api_key = SecretStr(ADMIN_KEY)
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, [StudyRow, StudyEventRow])
    ctx = ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir), engine)
    ctx.ready["all"] = True
    return TestClient(create_app(ctx), headers={"Authorization": f"Bearer {ADMIN_KEY}"}), engine


def stored(sop: str) -> InstanceStored:
    return InstanceStored(
        **ENVELOPE, sop_instance_uid=sop, series_instance_uid="1.2.840.1.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG", object_key="k", size_bytes=1, sha256="x", patient_key="p",
    )


def test_study_appears_with_state_lights_and_timeline(settings: Settings) -> None:
    client, engine = client_and_engine(settings)
    first = stored("1.1")
    assert project(engine, first) is True
    assert project(engine, first) is False  # a redelivery changes nothing
    project(engine, stored("1.2"))
    project(engine, StudyCompleted(**ENVELOPE, reason="quiet_period", views=[]))
    body = client.get("/studies/1.2.840.1").json()
    assert (body["state"], body["status_light"], body["triage_light"]) == ("completed", "YELLOW", None)
    assert body["instance_count"] == 2 and body["accession_number"] == "A1"
    assert [e["event_type"] for e in body["events"]] == ["instance.stored", "instance.stored", "study.completed"]
    assert "sintétic" in body["model_notice"]
    listed = client.get("/studies", params={"hospital_id": "HGE"}).json()
    assert [s["study_uid"] for s in listed["items"]] == ["1.2.840.1"] and listed["next_cursor"] is None
    assert client.get("/studies", params={"hospital_id": "OTRO"}).json() == {"items": [], "next_cursor": None}


def test_unknown_study_is_404_with_a_reason(settings: Settings) -> None:
    client, _ = client_and_engine(settings)
    response = client.get("/studies/9.9.9")
    assert response.status_code == 404 and "no encontrado" in response.json()["detail"]


def test_bad_query_is_422_and_health_is_open(settings: Settings) -> None:
    client, _ = client_and_engine(settings)
    assert client.get("/studies", params={"limit": 0}).status_code == 422
    assert client.get("/healthz").json() == {"status": "ok", "ready": True, "dependencies": []}


def test_board_is_spanish_and_shows_the_model_notice(settings: Settings) -> None:
    client, engine = client_and_engine(settings)
    project(engine, stored("1.1"))
    page = client.get("/", headers={"Authorization": ""}).text
    assert 'lang="es-MX"' in page and "Semáforo de mastografías" in page and "sintétic" in page
    assert "sessionStorage" in page and "A1" not in page  # nothing about studies before signing in
    table = client.get("/board/table").text
    assert "A1" in table and "sintétic" in table
    assert client.get("/board/table", headers={"Authorization": ""}).status_code == 401
