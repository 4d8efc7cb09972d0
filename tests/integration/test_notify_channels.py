"""Notify through real channels: an SMTP server (aiosmtpd), and an HTTP server on loopback that
receives the Twilio-format SMS and the JSON webhook. Counts what arrives there: once, and only once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time as clock
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs
from uuid import uuid4
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from shared.bus import MemoryBus
from shared.events import BreastResult, DeadLetter, StudyFailed, StudyInferred, producer
from shared.runtime import ServiceContext, WebComponent, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy
from services.notify.__main__ import register_rules
from services.notify.digest import due_day, window
from services.notify.scheduler import NotifyScheduler
from services.notify.tables import NotificationRecord
from services.status_api.__main__ import register as register_status_api
from tests.conftest import free_port
from tests.e2e.harness import SmtpSink, body_text, smtp_sink

SID, TOKEN, SENDER = "AC0123456789", "s3cret-token", "+526460000000"
ONCO_PHONE, RADIO_PHONE = "+526461110001", "+526461110002"
SMS_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


@dataclass
class Received:
    """One HTTP request the loopback server got."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.body.decode()).items()}


@dataclass
class LoopbackHttp:
    """A real HTTP server on 127.0.0.1 playing an SMS gateway (Twilio's API) and a webhook receiver."""

    port: int
    requests: list[Received] = field(default_factory=list)
    sms_status: int = 201
    sms_hold: threading.Event | None = None  # when set, SMS requests wait for it (a send in progress)

    def sms(self) -> list[Received]:
        return [r for r in self.requests if r.path == SMS_PATH]

    def hooks(self) -> list[Received]:
        return [r for r in self.requests if r.path.startswith("/hooks/")]


@contextmanager
def loopback_http() -> Iterator[LoopbackHttp]:
    state = LoopbackHttp(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received = Received(self.path, dict(self.headers), body)
            state.requests.append(received)
            status, answer = 200, b"{}"
            if self.path.startswith("/2010-04-01/"):
                if state.sms_hold is not None:
                    state.sms_hold.wait(30)
                status, answer = state.sms_status, json.dumps({"sid": f"SM{len(state.requests)}", "status": "queued"}).encode()
            received.status = status
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.sms_hold is not None:
            state.sms_hold.set()
        server.shutdown()
        server.server_close()


DEFAULT_RULES = """
[[hospitals.HGE.rules]]
id = "triage_red"
event = "study.inferred"
lights = ["RED"]
recipients = ["onco", "radio"]
channels = ["sms", "email"]
[[hospitals.HGE.rules]]
id = "result_ready"
event = "study.inferred"
recipients = ["doctor"]
[[hospitals.HGE.rules]]
id = "study_failed"
event = "study.failed"
recipients = ["it"]
"""


def rules_toml(http: LoopbackHttp, rules: str, header: str) -> str:
    return f"""{header}
sms_gateway = "twiliogw://{SID}:{TOKEN}@127.0.0.1:{http.port}/{SENDER}"
[hospitals.HGE.recipients]
onco = {{ name = "Oncología de guardia", channels = ["{ONCO_PHONE}", "onco@hge.example.mx"] }}
radio = {{ name = "Radiología", channels = ["{RADIO_PHONE}", "radio@hge.example.mx"] }}
doctor = {{ name = "Médico solicitante", language = "en", channels = ["json://127.0.0.1:{http.port}/hooks/doctor"] }}
it = {{ name = "Informática", channels = ["ti@hge.example.mx"] }}
{rules}
"""


@pytest.fixture
def servers() -> Iterator[tuple[SmtpSink, LoopbackHttp]]:
    with smtp_sink(free_port()) as sink, loopback_http() as http:
        yield sink, http


def notify_settings(
    settings: Settings, sink: SmtpSink, http: LoopbackHttp, tmp_path: Path, rules: str = DEFAULT_RULES, header: str = "", **update: object
) -> Settings:
    """Settings pointing notify at the test servers, with a rules file written for them."""
    path = tmp_path / "rules.toml"
    path.write_text(rules_toml(http, rules, header), encoding="utf-8")
    return settings.model_copy(
        update={"smtp_port": sink.port, "notify_rules_file": path, "notify_send_attempts": 2, "notify_backoff_seconds": 0.01,
                "public_base_url": "https://mdd.hge.example.mx", **update}
    )


API_KEY = "notify-test-admin-key-000001"
API_HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@asynccontextmanager
async def notify_running(settings: Settings, with_api: bool = False) -> AsyncIterator[tuple[ServiceContext, NotifyScheduler]]:
    """The notify service's rules (and optionally the status API, with an admin key) on the in-process bus."""
    if with_api:
        settings.bootstrap_api_key = SecretStr(API_KEY)
    ctx = build_context(settings)
    scheduler = register_rules(ctx)
    web: WebComponent | None = register_status_api(ctx) if with_api else None
    await ctx.bus.start()
    await scheduler.start()  # the sweep sends what had to wait
    if web:
        await web.start()
    try:
        yield ctx, scheduler
    finally:
        if web:
            await web.stop()
        await scheduler.stop()
        await ctx.bus.stop()
        ctx.engine.dispose()


def result(study: SyntheticStudy, light: str = "RED", **update: object) -> StudyInferred:
    return StudyInferred(
        study_uid=study.study_uid, hospital_id="HGE", correlation_id="corr-1", producer=producer("infer"),
        accession_number=study.accession_number,
        breasts=[BreastResult(laterality="L", malignancy_score=0.93, birads=5, density="B", views_used=["CC", "MLO"])],
        triage_light=light, triage_reason="Sospechoso: mama izquierda", model_name="twoview", model_version="0.1.0",
        model_trained=True, model_trained_on="fantomas sintéticos",
        disclaimer="Modelo de demostración entrenado con fantomas sintéticos; no es un dispositivo clínico.",
    ).model_copy(update=update)


def memory_bus(ctx: ServiceContext) -> MemoryBus:
    assert isinstance(ctx.bus, MemoryBus)
    return ctx.bus


async def drained(ctx: ServiceContext) -> None:
    """Wait until every published event has been handled."""
    await memory_bus(ctx).drain()


def published(ctx: ServiceContext, topic: str) -> list[dict]:
    """Every message the service published on ``topic``, decoded."""
    return [json.loads(payload) for sent_topic, payload in memory_bus(ctx).sent if sent_topic == topic]


def records(ctx: ServiceContext) -> dict[tuple[str, str], NotificationRecord]:
    with Session(ctx.engine) as session:
        return {(r.rule, r.recipient): r for r in session.exec(select(NotificationRecord)).all()}


async def wait_until(probe: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = clock.monotonic() + timeout
    while not probe():
        assert clock.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_red_light_reaches_everyone_by_sms_email_and_webhook_once_across_redelivery_and_restart(
    settings: Settings, servers: tuple[SmtpSink, LoopbackHttp], tmp_path: Path, four_view_study: SyntheticStudy
) -> None:
    sink, http = servers
    settings = notify_settings(settings, sink, http, tmp_path)
    event = result(four_view_study)
    async with notify_running(settings, with_api=True) as (ctx, _):
        await ctx.bus.publish(event)
        await ctx.bus.publish(event)  # redelivered
        await ctx.bus.publish(event.model_copy(update={"event_id": uuid4()}))  # the same result, published again
        await drained(ctx)
        sent_events = published(ctx, "mdd.notification.sent")
        api = f"http://127.0.0.1:{settings.api_port}"
        async with httpx.AsyncClient(base_url=api, headers=API_HEADERS) as client:
            log = (await client.get(f"/studies/{event.study_uid}/notifications")).json()
            failed = (await client.get("/notifications", params={"status": "failed"})).json()
            everything = (await client.get("/notifications", params={"study_uid": event.study_uid, "status": "sent"})).json()
            missing = await client.get("/studies/9.9.9/notifications")

    # E-mail: one to each doctor, with the full message and the model notice.
    assert sorted(to for recipients, _ in sink.messages for to in recipients) == ["onco@hge.example.mx", "radio@hge.example.mx"]
    [mail] = sink.to("onco@hge.example.mx")
    assert "ROJO" in mail["Subject"] and four_view_study.accession_number in mail["Subject"]
    text = body_text(mail)
    assert "0.93" in text and "BI-RADS 5" in text and "fantomas sintéticos" in text
    assert f"https://mdd.hge.example.mx/studies/{event.study_uid}" in text

    # SMS: one Twilio Messages API call per phone, form-encoded, with basic auth; no patient identity.
    sms = http.sms()
    assert sorted(r.form()["To"] for r in sms) == [ONCO_PHONE, RADIO_PHONE]
    patient = str(four_view_study.views[0].dataset.PatientName)
    for request in sms:
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        form = request.form()
        assert set(form) == {"To", "From", "Body"} and form["From"] == SENDER
        assert form["Body"].startswith(f"MDD: semáforo ROJO, acceso {four_view_study.accession_number}.")
        assert f"https://mdd.hge.example.mx/studies/{event.study_uid}" in form["Body"] and "datos sintéticos" in form["Body"]
        assert all(part not in form["Body"] for part in patient.replace("^", " ").split())

    # JSON webhook: the ordering doctor's, in English.
    [hook] = http.hooks()
    payload = json.loads(hook.body)
    assert hook.path == "/hooks/doctor" and "RED triage light" in payload["title"] and "NOTICE:" in payload["message"]

    # One notification.sent per delivery (a redelivery republishes the same event id), all in the log.
    assert len({e["event_id"] for e in sent_events}) == 5 and {e["status"] for e in sent_events} == {"sent"}
    assert sorted((e["rule"], e["channel"], e["recipient"]) for e in log) == [
        ("result_ready", "webhook", f"doctor <json://127.0.0.1:{http.port}/hooks/doctor>"),
        ("triage_red", "email", "onco <onco@hge.example.mx>"),
        ("triage_red", "email", "radio <radio@hge.example.mx>"),
        ("triage_red", "sms", f"onco <{ONCO_PHONE}>"),
        ("triage_red", "sms", f"radio <{RADIO_PHONE}>"),
    ]
    assert all(TOKEN not in json.dumps(entry) for entry in log)
    assert failed == [] and len(everything) == 5 and missing.status_code == 404

    # After a restart the same event sends nothing again.
    async with notify_running(settings) as (ctx, _):
        await ctx.bus.publish(event)
        await drained(ctx)
        again = published(ctx, "mdd.notification.sent")
    assert len(sink.messages) == 2 and len(http.sms()) == 2 and len(http.hooks()) == 1
    assert again == []  # each delivery was reported once, through the outbox, when it was settled


async def test_a_channel_that_refuses_the_message_ends_failed_with_its_event_and_a_dead_letter(
    settings: Settings, servers: tuple[SmtpSink, LoopbackHttp], tmp_path: Path, four_view_study: SyntheticStudy
) -> None:
    sink, http = servers
    http.sms_status = 400  # the gateway refuses the message: sending it again the same way will not help
    settings = notify_settings(settings, sink, http, tmp_path)
    event = result(four_view_study)
    async with notify_running(settings, with_api=True) as (ctx, _):
        await ctx.bus.publish(event)
        await wait_until(lambda: sum(r.status == "failed" for r in records(ctx).values()) == 2, "both SMS failed")
        await ctx.bus.publish(event)  # redelivered: no new attempts, no second dead letter
        await drained(ctx)
        await wait_until(lambda: len(published(ctx, "mdd.dlq")) == 2, "the dead letters")
        sent_events = published(ctx, "mdd.notification.sent")
        letters = [DeadLetter.model_validate(d) for d in published(ctx, "mdd.dlq")]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", headers=API_HEADERS) as client:
            failed = (await client.get("/notifications", params={"status": "failed", "study_uid": event.study_uid})).json()
        rows = records(ctx)

    assert len(http.sms()) == 2 * settings.notify_send_attempts  # two phones, every attempt reached the gateway
    assert len(sink.messages) == 2  # the e-mails went out regardless
    failures = {e["recipient"]: e for e in sent_events if e["status"] == "failed"}
    assert set(failures) == {f"onco <{ONCO_PHONE}>", f"radio <{RADIO_PHONE}>"}
    assert all("400" in e["detail"] for e in failures.values())
    assert rows[("triage_red", f"onco <{ONCO_PHONE}>")].status == "failed"
    assert rows[("triage_red", f"onco <{ONCO_PHONE}>")].attempts == settings.notify_send_attempts
    assert len(letters) == 2 and {letter.stage for letter in letters} == {"notify"}
    assert all(letter.source_topic == "mdd.study.inferred" and letter.study_uid == event.study_uid for letter in letters)
    assert all(StudyInferred.model_validate_json(letter.payload) == event for letter in letters)  # replayable
    assert sorted(entry["recipient"] for entry in failed) == sorted(failures)
    assert all(TOKEN not in letter.model_dump_json() for letter in letters)


async def test_channels_that_are_down_are_waited_for_and_each_message_arrives_once_when_they_are_back(
    settings: Settings, tmp_path: Path, four_view_study: SyntheticStudy
) -> None:
    smtp_port = free_port()
    with loopback_http() as http:
        http.sms_status = 503  # the SMS gateway is overloaded, and the SMTP server is not even running
        settings = notify_settings(settings, SmtpSink(smtp_port), http, tmp_path)
        event = result(four_view_study)
        async with notify_running(settings, with_api=True) as (ctx, _):
            await ctx.bus.publish(event)
            await drained(ctx)
            # Many more tries than the attempts allowed go by while the channels are down; none counts.
            await wait_until(lambda: len(http.sms()) > 2 * settings.notify_send_attempts, "retries while the gateway is down")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}") as client:
                health = (await client.get("/healthz")).json()
            rows = records(ctx)
            assert all(r.status in ("pending", "sending") and r.attempts == 0 for key, r in rows.items() if key[0] == "triage_red")
            assert published(ctx, "mdd.dlq") == [] and not any(e["status"] == "failed" for e in published(ctx, "mdd.notification.sent"))
            assert health["status"] == "degraded"
            assert {d["dependency"] for d in health["dependencies"]} >= {"sms", "smtp"}

            http.sms_status = 201
            with smtp_sink(smtp_port) as sink:  # both are back
                await wait_until(
                    lambda: all(r.status == "sent" for r in records(ctx).values()), "every delivery sent", timeout=60
                )
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}") as client:
                    health = (await client.get("/healthz")).json()
            accepted = [r.form()["To"] for r in http.sms() if r.status == 201]
    assert sorted(to for recipients, _ in sink.messages for to in recipients) == ["onco@hge.example.mx", "radio@hge.example.mx"]
    assert sorted(accepted) == [ONCO_PHONE, RADIO_PHONE]  # each phone got its message once
    assert health["status"] == "ok" and health["dependencies"] == []
    assert {e["status"] for e in published(ctx, "mdd.notification.sent")} == {"sent"}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_an_sms_interrupted_by_a_crash_is_settled_uncertain_never_resent_and_it_is_told_once(
    settings: Settings, servers: tuple[SmtpSink, LoopbackHttp], tmp_path: Path, four_view_study: SyntheticStudy,
    database: str, request: pytest.FixtureRequest,
) -> None:
    if database == "postgresql":
        settings = settings.model_copy(update={"database_url": request.getfixturevalue("postgres_url")})
    sink, http = servers
    http.sms_hold = threading.Event()
    event = StudyFailed(
        study_uid=four_view_study.study_uid, hospital_id="HGE", correlation_id="c", producer=producer("infer"),
        accession_number=four_view_study.accession_number, stage="infer", reason="sin vistas",
    )
    rules = """
[[hospitals.HGE.rules]]
id = "study_failed"
event = "study.failed"
recipients = ["it", "onco"]
channels = ["email", "sms"]
"""
    settings = notify_settings(settings, sink, http, tmp_path, rules, notify_sending_lease_seconds=0.5,
                               it_alert_channels=["guardia-ti@hge.example.mx"])
    async with notify_running(settings) as (ctx, _):
        await ctx.bus.publish(event)
        # Both go out at once: the e-mails arrive while the SMS is still being sent.
        await wait_until(lambda: len(http.sms()) == 1 and len(sink.messages) == 2, "the SMS in flight and both e-mails")
        await wait_until(lambda: records(ctx)[("study_failed", "it <ti@hge.example.mx>")].status == "sent", "the e-mail recorded")
    # The service stopped mid-send (the bus cancelled the handler). The gateway then answers.
    http.sms_hold.set()

    for _ in range(2):  # the restart finds the abandoned claim once its lease is over; a second restart finds nothing
        async with notify_running(settings) as (ctx, scheduler):
            await wait_until(lambda: records(ctx)[("study_failed", f"onco <{ONCO_PHONE}>")].status == "uncertain", "settled")
            await wait_until(lambda: len(sink.to("guardia-ti@hge.example.mx")) == 1, "IT told")
            await ctx.bus.publish(event)  # and the broker redelivers the event
            await drained(ctx)
            await scheduler.tick()
            events = published(ctx, "mdd.notification.sent")
            letters = [DeadLetter.model_validate(d) for d in published(ctx, "mdd.dlq")]
            rows = records(ctx)
        if _ == 0:
            first_events, first_letters = events, letters

    assert len(http.sms()) == 1  # the SMS was not sent a second time
    [uncertain] = first_events
    assert uncertain["status"] == "failed" and uncertain["recipient"] == f"onco <{ONCO_PHONE}>"
    assert "incierta" in uncertain["detail"] and "uncertain" in uncertain["detail"]
    assert rows[("study_failed", f"onco <{ONCO_PHONE}>")].status == "uncertain"
    assert [letter.study_uid for letter in first_letters] == [event.study_uid]
    assert events == [] and letters == []  # nothing more on the second restart
    [alert] = sink.to("guardia-ti@hge.example.mx")
    assert four_view_study.accession_number in body_text(alert) and "incierta" in body_text(alert)
    assert len(sink.messages) == 3  # the two e-mails of the rule, and IT's alert, once


async def test_an_email_whose_sender_died_mid_send_is_sent_again_under_the_same_message_id(
    settings: Settings, servers: tuple[SmtpSink, LoopbackHttp], tmp_path: Path, four_view_study: SyntheticStudy
) -> None:
    sink, http = servers
    rules = """
[[hospitals.HGE.rules]]
id = "study_failed"
event = "study.failed"
recipients = ["it"]
channels = ["email"]
"""
    settings = notify_settings(settings, sink, http, tmp_path, rules, notify_sending_lease_seconds=0.5)
    event = StudyFailed(
        study_uid=four_view_study.study_uid, hospital_id="HGE", correlation_id="c", producer=producer("infer"),
        accession_number=four_view_study.accession_number, stage="infer", reason="sin vistas",
    )
    async with notify_running(settings) as (ctx, _):
        await ctx.bus.publish(event)
        await wait_until(lambda: len(sink.messages) == 1, "the e-mail")
        await wait_until(lambda: records(ctx)[("study_failed", "it <ti@hge.example.mx>")].status == "sent", "recorded")
        with Session(ctx.engine) as session:  # as if the sender had died after the SMTP server took it
            row = session.exec(select(NotificationRecord)).one()
            row.status, row.owner, row.lease_until = "sending", "a-process-that-died", datetime.now(timezone.utc)
            session.add(row)
            session.commit()
        await wait_until(lambda: len(sink.messages) == 2, "the e-mail sent again by the sweep")
        await wait_until(lambda: records(ctx)[("study_failed", "it <ti@hge.example.mx>")].status == "sent", "settled again")
    first, second = (message for _, message in sink.messages)
    assert first["Message-ID"] == second["Message-ID"] and first["Message-ID"].startswith("<")
    assert body_text(first) == body_text(second)


async def test_daily_digest_lists_the_days_green_studies_once_per_recipient_even_after_a_restart(
    settings: Settings, servers: tuple[SmtpSink, LoopbackHttp], tmp_path: Path, four_view_study: SyntheticStudy
) -> None:
    sink, http = servers
    now = datetime.now(timezone.utc)
    zone = ZoneInfo("America/Tijuana")
    at = (now - timedelta(hours=1)).astimezone(zone).time().replace(second=0, microsecond=0)
    start, end = window(due_day(now, at, zone), at, zone)
    digest_rules = f"""
[[hospitals.HGE.rules]]
id = "green_digest"
event = "daily_digest"
at = "{at.strftime('%H:%M')}"
recipients = ["radio", "doctor"]
channels = ["email", "webhook"]
"""
    settings = notify_settings(settings, sink, http, tmp_path, digest_rules, header='timezone = "America/Tijuana"')
    inside = [result(four_view_study, "GREEN", study_uid=f"1.2.{i}", accession_number=f"ACCV{i}", occurred_at=end - timedelta(minutes=10 + i)) for i in range(2)]
    red = result(four_view_study, "RED", study_uid="1.2.8", accession_number="ACCROJO", occurred_at=end - timedelta(minutes=5))
    before = result(four_view_study, "GREEN", study_uid="1.2.9", accession_number="ACCAYER", occurred_at=start - timedelta(minutes=1))
    async with notify_running(settings) as (ctx, scheduler):
        for event in [*inside, inside[0], red, before]:
            await ctx.bus.publish(event)
        await drained(ctx)
        await scheduler.tick()
        await scheduler.tick()
    async with notify_running(settings) as (ctx, scheduler):
        await scheduler.tick()

    [digest] = sink.to("radio@hge.example.mx")
    assert digest["Subject"] == f"[MDD] Resumen diario HGE {due_day(now, at, zone).isoformat()}: 2 estudios VERDE"
    text = body_text(digest)
    assert "ACCV0" in text and "ACCV1" in text and "ACCROJO" not in text and "ACCAYER" not in text
    assert "fantomas sintéticos" in text
    [hook] = http.hooks()
    assert "2 GREEN studies" in json.loads(hook.body)["title"] and hook.path == "/hooks/doctor"
    assert len(sink.messages) == 1  # only the digest: no rule sends results one by one here
