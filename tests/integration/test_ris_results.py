"""Results to the RIS and the HIS: an ORU^R01 to a real MLLP listener (hl7apy's) that checks it against HL7 v2.5
and answers an ACK, and a FHIR transaction to a FHIR endpoint whose Bundle HAPI FHIR's validator accepts as R4;
by the hospital's rules, once, and reported like every other notification."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.parser import parse_message
from sqlmodel import Session

from shared.db import init_db
from shared.instance_index import InstanceIndexRow, row_from_header
from shared.runtime import ServiceContext, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy, make_study
from services.notify.__main__ import register as register_notify
from tests.conftest import free_port
from tests.integration.test_pacs_results import handle
from tests.unit.test_pacs_results import headers, inferred, store_study
from tests.validators import fhir_validate

HOSPITAL = "HGE-ENSENADA"


class Listener:
    """What the RIS received, and what it answers (AA, or AE to refuse)."""

    def __init__(self, answer: str = "AA") -> None:
        self.answer = answer
        self.messages: list[Message] = []


def ris_handler(listener: Listener) -> type[AbstractHandler]:
    class OruHandler(AbstractHandler):
        def reply(self) -> str:
            message = parse_message(self.incoming_message, validation_level=VALIDATION_LEVEL.STRICT)  # v2.5 structure
            assert message.validate()
            listener.messages.append(message)
            ack = Message("ACK", version="2.5")
            ack.msh.msh_3, ack.msh.msh_5 = "RIS", message.msh.msh_3.value
            ack.msh.msh_9 = "ACK^R01^ACK"
            ack.msh.msh_10 = "ACK" + message.msh.msh_10.value[-10:]
            ack.msh.msh_11, ack.msh.msh_12 = "P", "2.5"
            ack.msa.msa_1, ack.msa.msa_2 = listener.answer, message.msh.msh_10.value
            return ack.to_mllp()

    return OruHandler


@contextmanager
def ris(listener: Listener) -> Iterator[int]:
    port = free_port()
    server = MLLPServer("127.0.0.1", port, {"ORU^R01^ORU_R01": (ris_handler(listener),)})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def fhir_server(received: list[dict]) -> Iterator[int]:
    """A FHIR endpoint that keeps every transaction Bundle and answers a transaction-response."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            bundle = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(bundle)
            answer = {"resourceType": "Bundle", "type": "transaction-response",
                      "entry": [{"response": {"status": "201 Created"}} for _ in bundle["entry"]]}
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def rules_file(path: Path, ris_port: int, fhir_port: int) -> Path:
    path.write_text(f"""
[hospitals.{HOSPITAL}.recipients.ris]
name = "RIS de imagenología"
channels = ["mllp://127.0.0.1:{ris_port}"]

[hospitals.{HOSPITAL}.recipients.his]
name = "Expediente clínico (FHIR)"
channels = ["fhir+http://127.0.0.1:{fhir_port}/fhir"]

[[hospitals.{HOSPITAL}.rules]]
id = "resultado_ris"
event = "study.inferred"
recipients = ["ris", "his"]

[hospitals.OTRO-HOSPITAL.recipients.ris]
channels = ["mllp://127.0.0.1:9"]

[[hospitals.OTRO-HOSPITAL.rules]]
id = "resultado_ris"
event = "study.inferred"
recipients = ["ris"]
""", encoding="utf-8")
    return path


def indexed(ctx: ServiceContext, study: SyntheticStudy) -> None:
    """The study as ingest stored and indexed it."""
    store_study(ctx, study)
    init_db(ctx.engine, [InstanceIndexRow])
    with Session(ctx.engine) as session:
        for header, view in zip(headers(study), study.views):
            key = f"{study.hospital_id}/{study.study_uid}/{header.SeriesInstanceUID}/{header.SOPInstanceUID}.dcm"
            session.merge(row_from_header(header, study.hospital_id, key, len(view.to_bytes())))
        session.commit()


@pytest.fixture
def study() -> SyntheticStudy:
    return make_study(seed=16_020, finding="mass", finding_laterality="L", hospital_id=HOSPITAL)


async def test_the_ris_and_the_his_get_the_result_once_as_hl7_and_valid_fhir(settings: Settings, study: SyntheticStudy, tmp_path: Path) -> None:
    listener, bundles = Listener(), []
    with ris(listener) as ris_port, fhir_server(bundles) as fhir_port:
        configured = settings.model_copy(update={"notify_rules_file": rules_file(tmp_path / "reglas.toml", ris_port, fhir_port)})
        ctx = build_context(configured)
        indexed(ctx, study)
        register_notify(ctx)
        await ctx.bus.start()
        try:
            published = await handle(ctx, inferred(study))
            again = await handle(ctx, inferred(study))  # a redelivery: nothing goes out twice
        finally:
            await ctx.bus.stop()
    sent = {(e["channel"], e["status"]) for e in published if e["rule"] == "resultado_ris"}
    assert sent == {("hl7", "sent"), ("fhir", "sent")}
    assert [e for e in again if e["rule"] == "resultado_ris" and e["event_id"] not in {p["event_id"] for p in published}] == []
    assert len(listener.messages) == 1 and len(bundles) == 1

    [oru] = listener.messages
    assert oru.msh.msh_9.value == "ORU^R01^ORU_R01" and oru.msh.msh_12.value == "2.5"
    patient = oru.oru_r01_patient_result.oru_r01_patient.pid
    assert patient.pid_3.pid_3_1.value == study.patient_id and patient.pid_8.value == "F"
    order = oru.oru_r01_patient_result.oru_r01_order_observation
    assert order.obr.obr_3.value == study.accession_number and order.obr.obr_25.value == "P"
    observations = {(o.obx.obx_3.obx_3_1.value, o.obx.obx_4.value): o.obx.obx_5.value for o in order.oru_r01_observation}
    assert observations[("MDD0010", "")].startswith("MDD0012")  # triage light: RED
    assert observations[("MDD0020", "L")] == "91.0" and observations[("MDD0021", "L")].startswith("397144001")  # BI-RADS 4
    assert observations[("MDD0001", "")].startswith("MDD0002") and observations[("MDD0003", "")].startswith("MDD0004")

    [bundle] = bundles
    types = sorted(entry["resource"]["resourceType"] for entry in bundle["entry"])
    assert types.count("Observation") == 10 and "DiagnosticReport" in types and "ImagingStudy" in types
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report["status"] == "preliminary" and "no validado clínicamente" in report["conclusion"]
    assert report["basedOn"][0]["identifier"]["value"] == study.accession_number
    imaging = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ImagingStudy")
    assert imaging["identifier"][0]["value"] == f"urn:oid:{study.study_uid}" and imaging["numberOfInstances"] == 4

    # HAPI FHIR's validator, in one run: the Bundle and each of its resources on their own.
    files = [tmp_path / "bundle.json"]
    files[0].write_text(json.dumps(bundle), encoding="utf-8")
    for index, entry in enumerate(bundle["entry"]):
        files.append(tmp_path / f"{entry['resource']['resourceType']}-{index}.json")
        files[-1].write_text(json.dumps(entry["resource"]), encoding="utf-8")
    issues = fhir_validate(files)
    errors = [f"{Path(name).name}: {issue['location']}: {issue['message']}" for name, found in issues.items()
              for issue in found if issue["severity"] in ("error", "fatal")]
    assert errors == []


async def _until(probe, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_ris_that_refuses_the_message_is_reported_and_dead_lettered(settings: Settings, study: SyntheticStudy, tmp_path: Path) -> None:
    listener = Listener(answer="AE")
    with ris(listener) as ris_port, fhir_server([]) as fhir_port:
        configured = settings.model_copy(update={
            "notify_rules_file": rules_file(tmp_path / "reglas.toml", ris_port, fhir_port),
            "notify_send_attempts": 2, "notify_backoff_seconds": 0.01,
        })
        ctx = build_context(configured)
        indexed(ctx, study)
        notify = register_notify(ctx)
        await ctx.bus.start()
        await notify.start()  # its sweep makes the second attempt
        try:
            before = len(ctx.bus.sent)
            await handle(ctx, inferred(study))
            await _until(lambda: any(json.loads(p).get("channel") == "hl7" for t, p in ctx.bus.sent[before:]
                                     if t == "mdd.notification.sent"))
            published = [json.loads(p) for _, p in ctx.bus.sent[before:]]
        finally:
            await notify.stop()
            await ctx.bus.stop()
    [hl7] = [e for e in published if e.get("channel") == "hl7"]
    assert hl7["status"] == "failed" and "MSA-1 AE" in hl7["detail"]
    assert len(listener.messages) == 2  # both attempts reached the RIS
    dead = [json.loads(p) for topic, p in ctx.bus.sent if topic == "mdd.dlq"]
    assert dead and "hl7" in dead[0]["error"]
