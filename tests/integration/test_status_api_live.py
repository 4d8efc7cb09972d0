"""Live study changes (SSE): scope, the cap per user or key, the end of a stream whose token stops being valid;
and Prometheus metrics, through a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import jwt
import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from services.status_api.api import create_app
from services.status_api.auth_tables import ApiKeyRow
from services.status_api.live import BROADCASTER
from services.status_api.projector import project
from services.status_api.security import create_api_key, create_user, deactivate_api_keys
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow
from shared.bus import MemoryBus
from shared.db import init_db, make_engine
from shared.events import InstanceStored, producer, utc_now
from shared.runtime import ServiceContext, WebComponent, WebLimits
from shared.settings import Settings
from shared.store import LocalStore

pytestmark = pytest.mark.integration
ADMIN_KEY = "live-admin-key-0123456789"
JWT_SECRET = "live-jwt-secret-0123456789-0123456789"


def stored(uid: str, hospital: str, sop: str = "1") -> InstanceStored:
    return InstanceStored(
        study_uid=uid, hospital_id=hospital, correlation_id=f"c-{uid}", producer=producer("ingest"), accession_number=f"ACC-{uid}",
        sop_instance_uid=f"{uid}.{sop}", series_instance_uid=f"{uid}.0", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG", object_key="k", size_bytes=1, sha256="x", patient_key="p",
    )


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict]]:
    """(event name, JSON data) for each event of a text/event-stream; comment lines are skipped."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())


async def test_a_client_of_hospital_a_gets_a_changes_live_and_never_b(settings: Settings) -> None:
    settings.bootstrap_api_key = SecretStr(ADMIN_KEY)
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    ctx = ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir), engine)
    server = WebComponent(create_app(ctx), "127.0.0.1", settings.api_port)
    await server.start()
    key_a = create_api_key(engine, "ris-a", "hospital_staff", ["HOSP-A"])
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/events")).status_code == 401
            assert (await client.get("/events", params={"access_token": "no-such-token"})).status_code == 401
            # EventSource style (token in the query) for A; header style for the administrator.
            async with client.stream("GET", "/events", params={"access_token": key_a}) as stream_a, \
                    client.stream("GET", "/events", headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as stream_admin:
                assert stream_a.status_code == 200 and stream_a.headers["content-type"].startswith("text/event-stream")
                events_a, events_admin = sse_events(stream_a), sse_events(stream_admin)
                assert (await anext(events_a))[0] == "ready" and (await anext(events_admin))[0] == "ready"

                await asyncio.to_thread(project, engine, stored("2.2.2", "HOSP-B"))
                await asyncio.to_thread(project, engine, stored("1.1.1", "HOSP-A"))

                # Changes arrive in order: the first one A sees is its own, so B's was filtered out.
                name, study = await asyncio.wait_for(anext(events_a), 10)
                assert (name, study["study_uid"], study["hospital_id"]) == ("study", "1.1.1", "HOSP-A")
                assert study["state_label"] and study["instance_count"] == 1
                seen_by_admin = [(await asyncio.wait_for(anext(events_admin), 10))[1]["study_uid"] for _ in range(2)]
                assert seen_by_admin == ["2.2.2", "1.1.1"]
        # Clients gone: the server forgets their streams.
        for _ in range(100):
            if BROADCASTER.count == 0:
                break
            await asyncio.sleep(0.05)
        assert BROADCASTER.count == 0
    finally:
        await server.stop()
        engine.dispose()


async def test_metrics_count_requests_events_and_studies(settings: Settings) -> None:
    settings.bootstrap_api_key = SecretStr(ADMIN_KEY)
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    ctx = ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir), engine)
    server = WebComponent(create_app(ctx), "127.0.0.1", settings.api_port)
    await server.start()
    try:
        await asyncio.to_thread(project, engine, stored("3.3.3", "HOSP-A"))
        await asyncio.to_thread(project, engine, stored("3.3.3", "HOSP-A", sop="2"))
        await asyncio.to_thread(project, engine, stored("4.4.4", "HOSP-B"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10) as client:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            for _ in range(3):
                assert (await client.get("/studies", headers=admin)).status_code == 200
            assert (await client.get("/studies/9.9.9", headers=admin)).status_code == 404
            assert (await client.get("/studies")).status_code == 401
            assert (await client.get("/metrics")).status_code == 401  # counts of every hospital: not open
            response = await client.get("/metrics", headers=admin)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                   for line in response.text.splitlines() if line and not line.startswith("#")}
        assert samples['mdd_api_requests_total{method="GET",route="/studies",status="200"}'] == 3
        assert samples['mdd_api_requests_total{method="GET",route="/studies/{study_uid}",status="404"}'] == 1
        assert samples['mdd_api_requests_total{method="GET",route="/studies",status="401"}'] == 1
        assert samples['mdd_api_requests_total{method="GET",route="/metrics",status="401"}'] == 1
        assert samples['mdd_api_request_seconds_count{method="GET",route="/studies"}'] == 4
        assert samples['mdd_studies{state="receiving",status_light="RED",triage_light="NONE"}'] == 2
        assert samples['mdd_status_events_applied_total{event_type="instance.stored"}'] >= 3
        assert "9.9.9" not in response.text and "HOSP-A" not in response.text  # counts only, nothing about patients
    finally:
        await server.stop()
        engine.dispose()


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceContext]]:
    """The API on loopback with the service's limits, and a client for it."""
    settings.bootstrap_api_key = SecretStr(ADMIN_KEY)
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    ctx = ServiceContext(settings, MemoryBus(settings), LocalStore(settings.resolved_store_dir), engine)
    app = create_app(ctx)
    server = WebComponent(app, "127.0.0.1", settings.api_port, limits=WebLimits.of_api(settings))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10) as client:
            yield client, ctx
    finally:
        await server.stop()
        engine.dispose()


async def test_streams_are_capped_per_user_or_key(settings: Settings) -> None:
    settings.api_max_streams_per_principal = 2
    async with served(settings) as (client, ctx):
        key_a = create_api_key(ctx.engine, "tablero-a", "hospital_staff", ["HOSP-A"])
        async with client.stream("GET", "/events", params={"access_token": key_a}) as first, \
                client.stream("GET", "/events", headers={"Authorization": f"Bearer {key_a}"}) as second:
            assert (first.status_code, second.status_code) == (200, 200)
            events = [sse_events(first), sse_events(second)]  # kept: a dropped reader closes its stream
            assert [(await anext(reader))[0] for reader in events] == ["ready", "ready"]
            third = await client.get("/events", params={"access_token": key_a})
            assert third.status_code == 429 and third.headers["retry-after"]
            assert "Demasiados flujos" in third.json()["detail"] and "too many live streams" in third.json()["detail"]
            # Another principal is not limited by A's streams.
            async with client.stream("GET", "/events", headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
                admin_events = sse_events(admin)
                assert admin.status_code == 200 and (await anext(admin_events))[0] == "ready"
            assert BROADCASTER.count >= 2  # A's two streams are still open
        # A's streams closed: it may open one again once the server has seen them go.
        for _ in range(100):
            if BROADCASTER.count == 0:
                break
            await asyncio.sleep(0.05)
        assert BROADCASTER.count == 0
        async with client.stream("GET", "/events", params={"access_token": key_a}) as again:
            again_events = sse_events(again)
            assert again.status_code == 200 and (await anext(again_events))[0] == "ready"


async def test_a_stream_ends_when_its_key_is_deactivated(settings: Settings) -> None:
    settings.auth_cache_seconds = 1.0  # the stream looks its key up again every second
    async with served(settings) as (client, ctx):
        key_a = create_api_key(ctx.engine, "tablero-a", "hospital_staff", ["HOSP-A"])
        async with client.stream("GET", "/events", params={"access_token": key_a}) as stream:
            events = sse_events(stream)
            assert (await anext(events))[0] == "ready"
            await asyncio.to_thread(project, ctx.engine, stored("5.5.5", "HOSP-A"))
            assert (await asyncio.wait_for(anext(events), 10))[0] == "study"
            await asyncio.to_thread(deactivate_api_keys, ctx.engine, "tablero-a")
            name, data = await asyncio.wait_for(anext(events), 30)
            assert name == "closed" and "desactivada" in data["reason"] and "deactivated" in data["reason"]
            with pytest.raises(StopAsyncIteration):  # the server ended the stream
                await asyncio.wait_for(anext(events), 10)
        assert (await client.get("/events", params={"access_token": key_a})).status_code == 401


async def test_a_stream_ends_when_its_keys_hospitals_change(settings: Settings) -> None:
    settings.auth_cache_seconds = 1.0
    async with served(settings) as (client, ctx):
        key_a = create_api_key(ctx.engine, "tablero-a", "hospital_staff", ["HOSP-A"])
        async with client.stream("GET", "/events", params={"access_token": key_a}) as stream:
            events = sse_events(stream)
            assert (await anext(events))[0] == "ready"
            with Session(ctx.engine) as session:  # the key is moved to hospital B
                row = session.exec(select(ApiKeyRow).where(ApiKeyRow.name == "tablero-a")).one()
                row.hospitals = ["HOSP-B"]
                session.add(row)
                session.commit()
            name, data = await asyncio.wait_for(anext(events), 30)
            assert name == "closed" and "hospitales" in data["reason"] and "reconnect" in data["reason"]


async def test_a_stream_ends_when_its_session_token_expires(settings: Settings) -> None:
    settings.auth_cache_seconds = 300  # only the token's own expiry can end it within the test
    settings.auth_jwt_secret = SecretStr(JWT_SECRET)
    async with served(settings) as (client, ctx):
        create_user(ctx.engine, "staff_a", "contraseña-segura-1", "hospital_staff", ["HOSP-A"])
        claims = {"sub": "staff_a", "exp": utc_now() + timedelta(seconds=3), "iss": settings.auth_jwt_issuer,
                  "aud": settings.auth_jwt_audience}
        token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        async with client.stream("GET", "/events", headers={"Authorization": f"Bearer {token}"}) as stream:
            events = sse_events(stream)
            assert (await anext(events))[0] == "ready"
            name, data = await asyncio.wait_for(anext(events), 30)
            assert name == "closed" and "vencido" in data["reason"]
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(anext(events), 10)
