"""The status API's hospital scoping, sign-in, cursor pages and audit log on a real PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from pydantic import SecretStr

from shared.bus import MemoryBus
from shared.db import init_db, make_engine
from shared.events import InstanceStored, producer
from shared.runtime import ServiceContext
from shared.settings import Settings
from shared.store import LocalStore
from services.status_api.api import create_app
from services.status_api.projector import project
from services.status_api.security import create_user
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow

ADMIN = {"Authorization": "Bearer pg-bootstrap-admin-key-000001"}


def stored(uid: str, hospital: str) -> InstanceStored:
    return InstanceStored(
        study_uid=uid, hospital_id=hospital, correlation_id=f"c-{uid}", producer=producer("ingest"), accession_number=f"ACC-{uid}",
        sop_instance_uid=f"{uid}.1", series_instance_uid=f"{uid}.0", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG", object_key="k", size_bytes=1, sha256="x", patient_key="p",
    )


def test_hospital_scope_pages_and_audit_on_postgres(settings: Settings, postgres_url: str) -> None:
    settings.database_url = postgres_url
    settings.bootstrap_api_key = SecretStr(ADMIN["Authorization"].removeprefix("Bearer "))
    engine = make_engine(postgres_url)
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    client = TestClient(create_app(ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir), engine)))
    for i in range(3):
        project(engine, stored(f"1.2.3.{i}", "HOSP-A"))
    project(engine, stored("1.2.9.9", "HOSP-B"))
    create_user(engine, "staff_a", "contraseña-segura-1", "hospital_staff", ["HOSP-A"])
    token = client.post("/auth/token", data={"username": "staff_a", "password": "contraseña-segura-1"}).json()["access_token"]
    staff = {"Authorization": f"Bearer {token}"}

    seen, cursor = [], None
    while True:
        page = client.get("/studies", params={"limit": 2, "sort": "triage", **({"cursor": cursor} if cursor else {})}, headers=staff).json()
        seen += [s["study_uid"] for s in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert sorted(seen) == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]
    assert client.get("/studies/1.2.9.9", headers=staff).status_code == 404
    assert client.get("/studies/1.2.3.0", headers=staff).json()["patient"] is None
    assert len(client.get("/studies", headers=ADMIN).json()["items"]) == 4
    audit = client.get("/audit", params={"who": "user:staff_a"}, headers=ADMIN).json()
    assert [e["action"] for e in audit].count("study.list") == 2 and {e["client"] for e in audit} == {"testclient"}
    assert any(e["action"] == "study.read" and e["study_uid"] == "1.2.3.0" for e in audit)
    engine.dispose()


def test_concurrent_failed_sign_ins_on_two_replicas_are_each_counted_on_postgres(settings: Settings, postgres_url: str) -> None:
    settings.database_url = postgres_url
    settings.bootstrap_api_key = SecretStr(ADMIN["Authorization"].removeprefix("Bearer "))
    settings.auth_login_max_failures = 8
    engines = [make_engine(postgres_url) for _ in range(2)]
    init_db(engines[0], [StudyRow, StudyEventRow, NotificationRow])
    replicas = [TestClient(create_app(ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir), engine)))
                for engine in engines]
    create_user(engines[0], "victima", "contraseña-segura-1", "doctor", ["HOSP-A"])

    def wrong(index: int) -> int:
        return replicas[index % 2].post("/auth/token", data={"username": "victima", "password": f"adivina-{index}"}).status_code

    # Eight at once, on both replicas, racing to create the username's row: none is lost, the eighth locks.
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(wrong, range(8)))
    assert statuses == [401] * 7 + [429], statuses
    assert replicas[1].post("/auth/token", data={"username": "victima", "password": "contraseña-segura-1"}).status_code == 429
    lockouts = [e for e in replicas[0].get("/audit", headers=ADMIN).json() if e["action"] == "auth.lockout"]
    assert [e["principal"] for e in lockouts] == ["user:victima"]
    for engine in engines:
        engine.dispose()
