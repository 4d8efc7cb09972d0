"""Who sees what in the status API: roles, hospital scope on every route, identity, audit, tokens, reports, lists."""

from __future__ import annotations

import copy
import io
import time
from datetime import timedelta

import jwt
import pydicom
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, select
from typer.testing import CliRunner

from shared.bus import MemoryBus
from shared.db import init_db, make_engine
from shared.events import InstanceStored, NotificationSent, StudyInferred, StudyReported, producer, utc_now
from shared.runtime import ServiceContext
from shared.settings import Settings
from shared.store import LocalStore
from shared.synth import SyntheticStudy
from services.status_api.api import create_app
from shared.instance_index import InstanceIndexRow, row_for
from services.status_api.projector import project
from services.status_api.schemas import AssignmentRequest, ReportRequest
from services.status_api.auth_tables import ApiKeyRow
from services.status_api.security import create_api_key, create_user
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow

ADMIN_KEY = "bootstrap-admin-key-for-tests-0001"
PASSWORD = "contraseña-segura-1"
# A valid body for every request model a study route takes; a new model must be added here.
EXAMPLE_BODIES = {ReportRequest: {"birads": 2, "text": "Benigno"}, AssignmentRequest: {"provider_id": "LECTURA-1"}}
OPEN_OR_ADMIN_ONLY = {"/healthz", "/auth/me", "/audit", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect", "/"}
# Not JSON reads: the endless SSE stream (scoping tested in tests/integration/test_status_api_live.py), the
# study page's HTML shell and the Prometheus counts (admin or metrics token), which hold no study data (checked below).
STREAM_AND_SHELL = {"/events", "/board/studies/{study_uid}", "/metrics"}


class World:
    """An app over SQLite and a local store with studies in two hospitals and one user per role."""

    def __init__(self, settings: Settings, study: SyntheticStudy) -> None:
        settings.bootstrap_api_key = SecretStr(ADMIN_KEY)
        self.engine = make_engine(settings.resolved_database_url)
        init_db(self.engine, [StudyRow, StudyEventRow, NotificationRow])
        self.bus = MemoryBus(settings)
        store = LocalStore(settings.resolved_store_dir)
        ctx = ServiceContext(settings, self.bus, store, self.engine)
        self.app = create_app(ctx)
        self.client = TestClient(self.app)
        self.study_a, self.study_b = study.study_uid, "1.2.840.99.2"
        for uid, hospital, accession in ((self.study_a, "HOSP-A", "ACC-A"), (self.study_b, "HOSP-B", "ACC-B")):
            project(self.engine, stored(uid, hospital, accession))
            project(self.engine, NotificationSent(**envelope(uid, hospital, accession), rule="r", channel="email",
                                                  recipient="radiologia@x.mx", status="sent"))
        init_db(self.engine, [InstanceIndexRow])
        dataset = study.views[0].dataset
        self.patient_name = str(dataset.PatientName)
        other = copy.deepcopy(dataset)
        other.StudyInstanceUID, other.AccessionNumber, other.PatientName = self.study_b, "ACC-B", "PACIENTE^HOSPITAL B"
        other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = f"{self.study_b}.1"
        self.uids_b = {"study": self.study_b, "series": str(other.SeriesInstanceUID), "sop": f"{self.study_b}.1"}
        for ds, uid, hospital, accession in ((dataset, self.study_a, "HOSP-A", "ACC-A"), (other, self.study_b, "HOSP-B", "ACC-B")):
            buffer = io.BytesIO()
            pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
            key = f"{hospital}/{uid}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
            store.put_bytes(settings.bucket_dicom, key, buffer.getvalue(), "application/dicom")
            event = stored(uid, hospital, accession).model_copy(
                update={"object_key": key, "series_instance_uid": str(ds.SeriesInstanceUID), "sop_instance_uid": str(ds.SOPInstanceUID)})
            with Session(self.engine) as session:
                session.add(row_for(event, pydicom.dcmread(io.BytesIO(buffer.getvalue()), stop_before_pixels=True)))
                session.commit()
        for name, role, hospitals, provider in (
            ("staff_a", "hospital_staff", ["HOSP-A"], None), ("doctor_a", "doctor", ["HOSP-A"], None),
            ("lector", "provider", [], "LECTURA-1"), ("carga_a", "uploader", ["HOSP-A"], None),
        ):
            create_user(self.engine, name, PASSWORD, role, hospitals, provider)

    def token(self, username: str) -> dict[str, str]:
        """Sign in through the OAuth2 password flow and return the Authorization header."""
        response = self.client.post("/auth/token", data={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


def envelope(uid: str, hospital: str, accession: str) -> dict:
    return dict(study_uid=uid, hospital_id=hospital, correlation_id=f"c-{uid}", producer=producer("ingest"), accession_number=accession)


def stored(uid: str, hospital: str, accession: str) -> InstanceStored:
    return InstanceStored(
        **envelope(uid, hospital, accession), sop_instance_uid=f"{uid}.1", series_instance_uid=f"{uid}.0",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG",
        object_key="k", size_bytes=1, sha256="x", patient_key="p",
    )


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def world(settings: Settings, four_view_study: SyntheticStudy) -> World:
    return World(settings, four_view_study)


def test_no_route_shows_another_hospitals_study(world: World) -> None:
    doctor = world.token("doctor_a")
    # Every route of the app, with router prefixes applied: a route added later is covered automatically.
    routes = [r for r in iter_route_contexts(world.app.routes) if isinstance(r.route, APIRoute) and r.path not in STREAM_AND_SHELL]
    for page in (world.client.get(f"/board/studies/{world.study_b}", headers=doctor).text, world.client.get("/metrics", headers=ADMIN).text):
        assert "ACC-B" not in page and "HOSPITAL B" not in page and "HOSP-B" not in page
    study_routes = [r for r in routes if "{study_uid}" in r.path or "{study}" in r.path]
    list_routes = [r for r in routes if "GET" in r.methods and "{" not in r.path and r.path not in OPEN_OR_ADMIN_ONLY]
    assert len(study_routes) >= 5 and any(r.path == "/studies" for r in list_routes)
    for route in study_routes:
        values = {"study_uid": world.study_b, "study": world.study_b, "series": world.uids_b["series"],
                  "sop": world.uids_b["sop"], "sop_instance_uid": world.uids_b["sop"], "kind": "crop", "numbers": "1",
                  "tag": "7FE00010"}
        path = route.path
        for name, value in values.items():
            path = path.replace("{" + name + "}", value)
        assert "{" not in path, f"parámetro sin valor de prueba / untested path parameter in {route.path}"
        for method in route.methods:
            body = None
            if route.route.body_field is not None:
                body = EXAMPLE_BODIES[route.route.body_field.field_info.annotation]  # KeyError: add an example body for the new route
            response = world.client.request(method, path, json=body, headers=doctor)
            if (method, route.path) == ("POST", "/dicomweb/studies/{study}"):
                # Storing under a UID another hospital uses makes the caller's own study (scoped by hospital):
                # the request passes to the STOW-RS parser, which refuses the JSON body for what it is.
                assert response.status_code == 415 and "ACC-B" not in response.text, response.text
                continue
            # Refused, not found, or a search (QIDO-RS) that finds nothing.
            empty_search = response.status_code == 204 or (response.status_code == 200 and response.json() == [])
            assert response.status_code in (403, 404) or empty_search, (method, route.path, response.status_code, response.text)
            assert "ACC-B" not in response.text and "HOSPITAL B" not in response.text
    for route in list_routes:
        response = world.client.get(route.path, headers=doctor)
        assert response.status_code == 200, (route.path, response.text)
        assert world.study_b not in response.text and "ACC-B" not in response.text, route.path
        assert "HOSPITAL B" not in response.text, route.path
        assert world.study_a in response.text, route.path  # the caller's own hospital is there
    # Asking for hospital B by filter does not widen the scope either.
    assert world.client.get("/studies", params={"hospital_id": "HOSP-B"}, headers=doctor).json()["items"] == []
    assert world.client.get("/notifications", params={"hospital_id": "HOSP-B"}, headers=doctor).json() == []
    assert world.client.get("/audit", headers=doctor).status_code == 403


def test_metrics_need_an_admin_or_the_scrapers_token(world: World) -> None:
    scraper_token = "token-del-recolector-prometheus-0123456789"
    world.app.state.ctx.settings.metrics_token = SecretStr(scraper_token)
    anonymous = world.client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert "mdd_api_requests" not in anonymous.text
    for user in ("doctor_a", "staff_a", "lector"):
        refused = world.client.get("/metrics", headers=world.token(user))
        assert refused.status_code == 403 and "MDD_METRICS_TOKEN" in refused.json()["detail"], user
    staff_key = create_api_key(world.engine, "ris-a", "hospital_staff", ["HOSP-A"])
    assert world.client.get("/metrics", headers={"Authorization": f"Bearer {staff_key}"}).status_code == 403
    assert world.client.get("/metrics", headers={"Authorization": "Bearer " + scraper_token[:-1]}).status_code == 401
    scraper = {"Authorization": f"Bearer {scraper_token}"}
    for headers in (scraper, ADMIN):
        response = world.client.get("/metrics", headers=headers)
        assert response.status_code == 200 and 'mdd_api_requests_total{method="GET",route="/metrics",status="403"}' in response.text
    # The scraper's token opens /metrics and nothing else.
    assert world.client.get("/studies", headers=scraper).status_code == 401
    assert world.client.get("/auth/me", headers=scraper).status_code == 401
    with pytest.raises(ValueError, match="MDD_METRICS_TOKEN es demasiado corto"):
        Settings(metrics_token="corto")


def test_provider_sees_only_assigned_studies(world: World) -> None:
    provider = world.token("lector")
    assert world.client.get("/studies", headers=provider).json()["items"] == []
    assert world.client.get(f"/studies/{world.study_b}", headers=provider).status_code == 404
    assert world.client.post(f"/studies/{world.study_b}/assignments", json={"provider_id": "LECTURA-1"},
                             headers=provider).status_code == 403
    assigned = world.client.post(f"/studies/{world.study_b}/assignments", json={"provider_id": "LECTURA-1"}, headers=ADMIN)
    assert assigned.status_code == 201 and assigned.json()["assigned_by"] == "bootstrap"
    listed = world.client.get("/studies", headers=provider).json()["items"]
    assert [s["study_uid"] for s in listed] == [world.study_b]
    assert world.client.get(f"/studies/{world.study_a}", headers=provider).status_code == 404


def test_identity_only_for_doctors_and_admins(world: World) -> None:
    world.client.post(f"/studies/{world.study_a}/assignments", json={"provider_id": "LECTURA-1"}, headers=ADMIN)
    seen = {}
    for who, headers in (("admin", ADMIN), ("doctor", world.token("doctor_a")), ("staff", world.token("staff_a")),
                         ("provider", world.token("lector"))):
        response = world.client.get(f"/studies/{world.study_a}", headers=headers)
        assert response.status_code == 200
        seen[who] = response.json()["patient"]
        assert (world.patient_name in response.text) == (who in ("admin", "doctor")), who
    assert seen["doctor"]["patient_name"] == world.patient_name and seen["doctor"]["patient_id"]
    assert seen["staff"] is None and seen["provider"] is None


def test_audit_log_records_who_what_when_and_from_where(world: World) -> None:
    before = utc_now()
    doctor = world.token("doctor_a")
    world.client.get(f"/studies/{world.study_a}", headers=doctor)
    world.client.post(f"/studies/{world.study_a}/report", json={"birads": 1, "text": "Negativo"}, headers=doctor)
    world.client.get("/studies", headers=world.token("staff_a"))
    entries = world.client.get("/audit", headers=ADMIN).json()
    by_action = {(e["principal"], e["action"]): e for e in entries}
    read = by_action[("user:doctor_a", "study.read")]
    assert read["role"] == "doctor" and read["study_uid"] == world.study_a and read["client"] == "testclient"
    assert "identidad" in read["detail"]
    assert by_action[("user:doctor_a", "study.report")]["detail"] == "BI-RADS 1"
    assert ("user:staff_a", "study.list") in by_action
    from datetime import datetime
    assert all(datetime.fromisoformat(e["at"]).replace(tzinfo=before.tzinfo) >= before - timedelta(seconds=1) for e in entries)
    only = world.client.get("/audit", params={"study_uid": world.study_a, "who": "user:doctor_a"}, headers=ADMIN).json()
    assert {e["action"] for e in only} == {"study.read", "study.report"}


def test_bad_missing_or_expired_tokens_are_401(world: World) -> None:
    for headers in ({}, {"Authorization": "Bearer nada"}, {"Authorization": "Basic eDp5"}):
        response = world.client.get("/studies", headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert "autenticado" in response.json()["detail"]
    expired = jwt.encode({"sub": "doctor_a", "exp": utc_now() - timedelta(minutes=1)}, world.app.state.jwt_secret, algorithm="HS256")
    assert world.client.get("/studies", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    forged = jwt.encode({"sub": "doctor_a", "exp": utc_now() + timedelta(minutes=5)}, "otro-secreto" * 4, algorithm="HS256")
    assert world.client.get("/studies", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    wrong = world.client.post("/auth/token", data={"username": "doctor_a", "password": "incorrecta"})
    assert wrong.status_code == 401
    assert world.client.get("/healthz").status_code == 200


def test_bootstrap_key_is_admin_and_created_only_once(world: World, settings: Settings) -> None:
    assert world.client.get("/auth/me", headers=ADMIN).json()["role"] == "admin"
    settings.bootstrap_api_key = SecretStr("another-bootstrap-key-000000")
    second = TestClient(create_app(ServiceContext(settings, world.bus, LocalStore(settings.resolved_store_dir), world.engine)))
    assert second.get("/auth/me", headers={"Authorization": "Bearer another-bootstrap-key-000000"}).status_code == 401
    assert second.get("/auth/me", headers=ADMIN).status_code == 200


def test_api_key_of_an_integration_is_scoped(world: World) -> None:
    key = create_api_key(world.engine, "ris-hosp-b", "hospital_staff", ["HOSP-B"])
    headers = {"Authorization": f"Bearer {key}"}
    assert [s["study_uid"] for s in world.client.get("/studies", headers=headers).json()["items"]] == [world.study_b]
    assert world.client.get(f"/studies/{world.study_a}", headers=headers).status_code == 404


def test_an_expired_api_key_is_refused_with_a_reason(world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli import app

    monkeypatch.setenv("MDD_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    past = runner.invoke(app, ["apikey", "add", "ris", "--role", "hospital_staff", "--hospital", "HOSP-A",
                               "--expires-at", "2020-01-31"])
    assert past.exit_code == 2 and "ya pasó" in past.output
    made = runner.invoke(app, ["apikey", "add", "ris", "--role", "hospital_staff", "--hospital", "HOSP-A",
                               "--expires-at", "2099-06-30T12:00:00"])
    assert made.exit_code == 0, made.output
    key = {"Authorization": f"Bearer {made.output.strip().splitlines()[-1]}"}
    me = world.client.get("/auth/me", headers=key).json()
    assert me["name"] == "ris" and me["expires_at"].startswith("2099-06-30T12:00:00")
    with Session(world.engine) as session:  # the date comes
        row = session.exec(select(ApiKeyRow).where(ApiKeyRow.name == "ris")).one()
        row.expires_at = utc_now() - timedelta(minutes=1)
        session.add(row)
        session.commit()
    fresh = TestClient(create_app(ServiceContext(settings, world.bus, LocalStore(settings.resolved_store_dir), world.engine)))
    for client in (fresh, world.client):  # the new replica at once; the first one once its cache entry is gone
        world.app.state.principal_cache = None
        refused = client.get("/studies", headers=key)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "venció" in refused.json()["detail"] and "expired" in refused.json()["detail"]


def test_a_cached_api_key_is_refused_from_its_expiry_not_after_the_cache_time(world: World) -> None:
    world.app.state.ctx.settings.auth_cache_seconds = 300
    world.app.state.principal_cache = None
    key = create_api_key(world.engine, "temporal", "admin", [], expires_at=utc_now() + timedelta(seconds=1.5))
    headers = {"Authorization": f"Bearer {key}"}
    assert world.client.get("/studies", headers=headers).status_code == 200  # now cached
    deadline = time.monotonic() + 15
    while (status := world.client.get("/studies", headers=headers).status_code) == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 401


def test_report_publishes_and_turns_the_study_green(world: World) -> None:
    doctor = world.token("doctor_a")
    url = f"/studies/{world.study_a}/report"
    bad = world.client.post(url, json={"birads": 7, "text": "x"}, headers=doctor)
    assert bad.status_code == 422 and "birads" in bad.text
    assert world.client.post(url, json={"text": "sin categoría"}, headers=doctor).status_code == 422
    assert world.client.post(url, json={"birads": 2}, headers=world.token("staff_a")).status_code == 403
    assert world.bus.sent == []  # nothing was published for the rejected reports
    accepted = world.client.post(url, json={"birads": 2, "text": "Hallazgo benigno"}, headers=doctor)
    assert accepted.status_code == 202 and accepted.json()["reporter"] == "user:doctor_a"
    topic, raw = world.bus.sent[-1]
    event = StudyReported.model_validate_json(raw)
    assert topic.endswith("study.reported") and (event.birads, event.text, event.hospital_id) == (2, "Hallazgo benigno", "HOSP-A")
    project(world.engine, event)
    body = world.client.get(f"/studies/{world.study_a}", headers=doctor).json()
    assert (body["state"], body["status_light"]) == ("reported", "GREEN")
    assert body["events"][-1]["event_type"] == "study.reported"


def test_list_filters_sorting_and_cursor_pages(world: World) -> None:
    lights = ["GREEN", "RED", None, "YELLOW", "RED"]
    uids = [f"1.2.840.77.{i}" for i in range(len(lights))]
    for uid, light in zip(uids, lights):
        project(world.engine, stored(uid, "HOSP-C", f"C{uid[-1]}"))
        if light:
            project(world.engine, StudyInferred(
                **envelope(uid, "HOSP-C", "C"), model_name="m", model_version="1", model_trained=True,
                model_trained_on="synthetic", disclaimer="sintético", breasts=[], triage_light=light, triage_reason="r"))
    pages, cursor = [], None
    while True:
        params = {"hospital_id": "HOSP-C", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = world.client.get("/studies", params=params, headers=ADMIN).json()
        pages.append([s["study_uid"] for s in page["items"]])
        if len(pages) == 1:  # a study arriving between pages neither repeats nor shifts what follows
            project(world.engine, stored("1.2.840.77.99", "HOSP-C", "NEW"))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    flat = [uid for page in pages for uid in page]
    assert [len(p) for p in pages] == [2, 2, 1] and sorted(flat) == sorted(uids) and len(set(flat)) == 5
    triage = world.client.get("/studies", params={"hospital_id": "HOSP-C", "sort": "triage"}, headers=ADMIN).json()["items"]
    assert [s["triage_light"] for s in triage] == ["RED", "RED", "YELLOW", "GREEN", None, None]
    reds = world.client.get("/studies", params={"triage_light": "RED"}, headers=ADMIN).json()["items"]
    assert sorted(s["study_uid"] for s in reds) == sorted([uids[1], uids[4]])
    untriaged = world.client.get("/studies", params={"hospital_id": "HOSP-C", "triage_light": "NONE"}, headers=ADMIN).json()
    assert sorted(s["study_uid"] for s in untriaged["items"]) == sorted([uids[2], "1.2.840.77.99"])
    future = (utc_now() + timedelta(days=1)).isoformat()
    assert world.client.get("/studies", params={"created_from": future}, headers=ADMIN).json()["items"] == []
    bad = world.client.get("/studies", params={"cursor": "no-es-un-cursor"}, headers=ADMIN)
    assert bad.status_code == 400 and "Cursor inválido" in bad.json()["detail"]


def test_cli_creates_users_and_keys(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli import app

    monkeypatch.setenv("MDD_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    added = runner.invoke(app, ["user", "add", "dra.lopez", "--role", "doctor", "--hospital", "HOSP-A", "--password", PASSWORD])
    assert added.exit_code == 0, added.output
    key_run = runner.invoke(app, ["apikey", "add", "ris", "--role", "hospital_staff", "--hospital", "HOSP-A"])
    assert key_run.exit_code == 0, key_run.output
    key = key_run.output.strip().splitlines()[-1]
    bad = runner.invoke(app, ["apikey", "add", "x", "--role", "jefe"])
    assert bad.exit_code == 2 and "Rol inválido" in bad.output
    spare = runner.invoke(app, ["apikey", "add", "ris-vieja", "--role", "hospital_staff", "--hospital", "HOSP-A"])
    spare_key = {"Authorization": f"Bearer {spare.output.strip().splitlines()[-1]}"}
    assert runner.invoke(app, ["apikey", "deactivate", "ris-vieja"]).exit_code == 0
    assert runner.invoke(app, ["apikey", "deactivate", "ris-vieja"]).exit_code == 1  # none left active
    client = TestClient(create_app(ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir),
                                                  make_engine(settings.resolved_database_url))))
    init_db(client.app.state.ctx.engine, [StudyRow, StudyEventRow, NotificationRow])  # type: ignore[attr-defined]
    assert client.get("/auth/me", headers={"Authorization": f"Bearer {key}"}).json()["hospitals"] == ["HOSP-A"]
    assert client.get("/auth/me", headers=spare_key).status_code == 401
    token = client.post("/auth/token", data={"username": "dra.lopez", "password": PASSWORD}).json()["access_token"]
    assert client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json()["role"] == "doctor"


@pytest.mark.parametrize("entry", ["proxy.hospital.mx", "10.1.2.10/8", "10.1.2"])
def test_a_trusted_proxy_that_is_no_address_or_network_is_refused_at_start(entry: str) -> None:
    # uvicorn would keep such an entry as a literal that never matches: the proxy's headers would be
    # ignored and the audit log would name the proxy instead of the browser, with no error anywhere.
    with pytest.raises(ValueError, match="MDD_API_FORWARDED_ALLOW_IPS"):
        Settings(api_forwarded_allow_ips=[entry])
    assert Settings(api_forwarded_allow_ips=["10.1.2.10", "10.1.0.0/16", "::1", "*"]).api_forwarded_allow_ips[-1] == "*"


def test_a_session_token_is_honoured_only_with_this_issuer_and_audience(world: World) -> None:
    signed_in = world.token("doctor_a")
    assert world.client.get("/studies", headers=signed_in).status_code == 200
    claims = jwt.decode(signed_in["Authorization"].removeprefix("Bearer "), world.app.state.jwt_secret, algorithms=["HS256"],
                        audience="mdd-status-api")
    assert claims["iss"] == "mdd-status-api" and claims["aud"] == "mdd-status-api"
    base = {"sub": "doctor_a", "exp": utc_now() + timedelta(minutes=5)}
    for extra in ({}, {"iss": "otro-sistema", "aud": "mdd-status-api"}, {"iss": "mdd-status-api", "aud": "otra-api"}):
        token = jwt.encode({**base, **extra}, world.app.state.jwt_secret, algorithm="HS256")  # the right secret
        assert world.client.get("/studies", headers={"Authorization": f"Bearer {token}"}).status_code == 401, extra


def test_a_short_jwt_secret_is_refused_at_start_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="MDD_AUTH_JWT_SECRET es demasiado corto"):
        Settings(auth_jwt_secret="corto-123")
    assert Settings(auth_jwt_secret="x" * 32).auth_jwt_secret is not None


def test_a_uid_two_hospitals_use_is_two_studies_and_a_caller_who_sees_both_must_name_one(
    world: World, four_view_study: SyntheticStudy
) -> None:
    # Hospital B sends a copy of hospital A's study: same Study, Series and SOP Instance UIDs, another patient.
    uid = world.study_a
    twin = copy.deepcopy(four_view_study.views[0].dataset)
    twin.PatientName, twin.AccessionNumber = "GEMELA^HOSPITAL B", "ACC-B2"
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, twin, enforce_file_format=True)
    key = f"HOSP-B/{uid}/{twin.SeriesInstanceUID}/{twin.SOPInstanceUID}.dcm"
    world.app.state.ctx.store.put_bytes(world.app.state.ctx.settings.bucket_dicom, key, buffer.getvalue(), "application/dicom")
    event = stored(uid, "HOSP-B", "ACC-B2").model_copy(
        update={"object_key": key, "series_instance_uid": str(twin.SeriesInstanceUID), "sop_instance_uid": str(twin.SOPInstanceUID)})
    project(world.engine, event)
    with Session(world.engine) as session:
        session.add(row_for(event, pydicom.dcmread(io.BytesIO(buffer.getvalue()), stop_before_pixels=True)))
        session.commit()

    ambiguous = world.client.get(f"/studies/{uid}", headers=ADMIN)
    assert ambiguous.status_code == 409 and "HOSP-A" in ambiguous.json()["detail"] and "HOSP-B" in ambiguous.json()["detail"]
    for hospital, accession in (("HOSP-A", "ACC-A"), ("HOSP-B", "ACC-B2")):
        chosen = world.client.get(f"/studies/{uid}", params={"hospital_id": hospital}, headers=ADMIN).json()
        assert (chosen["hospital_id"], chosen["accession_number"]) == (hospital, accession)
        assert {e["payload"]["hospital_id"] for e in chosen["events"]} == {hospital}
    listed = world.client.get("/studies", headers=ADMIN).json()["items"]
    assert sorted(s["hospital_id"] for s in listed if s["study_uid"] == uid) == ["HOSP-A", "HOSP-B"]

    # A doctor of hospital A sees only A's study, with no ambiguity and nothing of B's.
    doctor = world.token("doctor_a")
    own = world.client.get(f"/studies/{uid}", headers=doctor)
    assert own.status_code == 200 and own.json()["hospital_id"] == "HOSP-A" and "ACC-B2" not in own.text
    assert world.client.get(f"/studies/{uid}", params={"hospital_id": "HOSP-B"}, headers=doctor).status_code == 404
    metadata = world.client.get(f"/dicomweb/studies/{uid}/metadata", headers=doctor)
    assert metadata.status_code == 200 and "GEMELA" not in metadata.text and world.patient_name in metadata.text

    # DICOMweb never serves the two as one: an administrator names the hospital.
    assert world.client.get(f"/dicomweb/studies/{uid}/metadata", headers=ADMIN).status_code == 409
    theirs = world.client.get(f"/dicomweb/studies/{uid}/metadata", params={"hospital": "HOSP-B"}, headers=ADMIN)
    assert theirs.status_code == 200 and "GEMELA" in theirs.text and world.patient_name not in theirs.text
    found = world.client.get("/dicomweb/studies", params={"StudyInstanceUID": uid, "hospital": "HOSP-B"}, headers=ADMIN).json()
    assert [study["00080050"]["Value"] for study in found] == [["ACC-B2"]]
    assert world.client.get(f"/dicomweb/studies/{uid}/metadata", params={"hospital": "HOSP-B"}, headers=doctor).status_code == 404
