"""The parts that keep the status API fast under load: the token cache, the audit writer's group
commit and the change notices between replicas. Real SQLite, the real app."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, func, select

from shared.bus import MemoryBus
from shared.db import init_db, make_engine
from shared.events import utc_now
from shared.runtime import ServiceContext
from shared.settings import Settings
from shared.store import LocalStore
from services.status_api.api import create_app
from services.status_api.audit_log import AuditLog
from services.status_api.auth_tables import ApiKeyRow, AuditRow
from services.status_api.change_feed import _PAYLOAD_LIMIT, notices, studies_in
from services.status_api.security import create_api_key, hash_api_key
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow

ADMIN_KEY = "load-parts-admin-key-0123456789"


def client_for(settings: Settings) -> tuple[TestClient, ServiceContext]:
    settings.bootstrap_api_key = SecretStr(ADMIN_KEY)
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    ctx = ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir), engine)
    return TestClient(create_app(ctx)), ctx


def deactivate(ctx: ServiceContext, key: str) -> None:
    with Session(ctx.engine) as session:
        row = session.get(ApiKeyRow, hash_api_key(key))
        assert row is not None
        row.active = False
        session.add(row)
        session.commit()


def test_a_deactivated_key_is_refused_once_its_cached_entry_expires(settings: Settings) -> None:
    client, ctx = client_for(settings.model_copy(update={"auth_cache_seconds": 0.5}))
    key = create_api_key(ctx.engine, "integracion", "hospital_staff", ["HGE"])
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/studies", headers=headers).status_code == 200
    deactivate(ctx, key)
    assert client.get("/studies", headers=headers).status_code == 200  # still within the cache's lifetime
    time.sleep(0.6)
    refused = client.get("/studies", headers=headers)
    assert refused.status_code == 401 and "desactivada" in refused.json()["detail"] and "deactivated" in refused.json()["detail"]


def test_without_the_cache_a_deactivated_key_is_refused_at_once(settings: Settings) -> None:
    client, ctx = client_for(settings.model_copy(update={"auth_cache_seconds": 0}))
    key = create_api_key(ctx.engine, "integracion", "hospital_staff", ["HGE"])
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/studies", headers=headers).status_code == 200
    deactivate(ctx, key)
    assert client.get("/studies", headers=headers).status_code == 401


def test_an_invalid_token_is_never_cached(settings: Settings) -> None:
    client, ctx = client_for(settings)
    assert client.get("/studies", headers={"Authorization": "Bearer mdd_not-yet-a-key"}).status_code == 401
    create_api_key(ctx.engine, "tarde", "admin", [], key="mdd_not-yet-a-key")
    assert client.get("/studies", headers={"Authorization": "Bearer mdd_not-yet-a-key"}).status_code == 200


def test_audit_entries_from_many_threads_are_each_committed_before_record_returns(settings: Settings) -> None:
    _, ctx = client_for(settings)
    log = AuditLog(ctx.engine, idle_seconds=0.2)

    def record(index: int) -> int:
        log.record({"at": utc_now(), "principal": f"apikey:t{index}", "role": "admin", "action": "study.read",
                    "study_uid": f"1.2.{index}", "client": "127.0.0.1", "detail": ""})
        with Session(ctx.engine) as session:  # visible to anyone as soon as record returned
            return session.exec(select(func.count()).select_from(AuditRow).where(AuditRow.principal == f"apikey:t{index}")).one()

    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(record, range(200)))
    assert seen == [1] * 200
    time.sleep(0.5)  # the idle writer stops; the next entry starts it again
    assert record(1000) == 1
    log.close()


def test_change_notices_fit_postgresql_and_carry_every_study_once() -> None:
    studies = [(f"HOSP-{index % 3}", f"1.2.826.0.1.3680043.10.{index}") for index in range(700)]
    payloads = notices(studies, origin="replica-a")
    assert len(payloads) > 1 and all(len(p.encode()) <= _PAYLOAD_LIMIT for p in payloads)
    assert all(p.split(" ")[0] == "replica-a" for p in payloads)
    assert [key for p in payloads for key in studies_in(p.split(" ")[1:])[0]] == studies
    assert notices([], origin="replica-a") == []


def test_a_change_notice_names_one_hospitals_study_and_still_reads_bare_uids() -> None:
    [payload] = notices([("HOSP-A", "1.2.3"), ("HOSP-B", "1.2.3")], origin="replica-a")
    assert payload == "replica-a HOSP-A/1.2.3 HOSP-B/1.2.3"
    assert studies_in(["HOSP-B/1.2.3", "1.2.4", ""]) == ([("HOSP-B", "1.2.3")], ["1.2.4"])  # an earlier replica's notice
