"""The end-to-end scenario both modes must pass: a modality sends a study, lights come on."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx

from shared.synth import SyntheticStudy
from tests.e2e.harness import API_KEY, SmtpSink, api_json, body_text, echoscu_ok, storescu, wait_for

RADIOLOGIST = "radiologia@hospital.example.mx"
PIPELINE_TIMEOUT = 180.0


def run_pipeline_scenario(
    *,
    api: str,
    dicom_port: int,
    study: SyntheticStudy,
    folder: Path,
    sink: SmtpSink,
    processes: list[tuple[subprocess.Popen[bytes], Path]],
    quiet_seconds: float,
) -> dict:
    """Send the study twice with storescu; check states, lights, e-mail and de-duplication.

    Returns the final study document from the API for mode-specific checks.
    """
    health = wait_for(lambda: (h := api_json(api, "/healthz")) and h["ready"] and h, 180, "the status API", processes)
    assert health["status"] == "ok"
    wait_for(lambda: echoscu_ok(dicom_port), 60, "the DICOM SCP (C-ECHO)", processes)

    output = storescu(folder, dicom_port)
    assert output.count("Received Store Response (Success)") == 4, output

    seen_states: list[str] = []

    def notified() -> dict | None:
        doc = api_json(api, f"/studies/{study.study_uid}")
        if doc and (not seen_states or seen_states[-1] != doc["state"]):
            seen_states.append(doc["state"])
        return doc if doc and doc["state"] == "notified" else None

    final = wait_for(notified, PIPELINE_TIMEOUT, "the study to be notified", processes)
    assert final["status_light"] == "GREEN"
    # The study has a suspicious mass in the left breast; the shipped synthetic-data model finds it.
    assert final["triage_light"] == "RED"
    left = next(b for b in final["breasts"] if b["laterality"] == "L")
    right = next(b for b in final["breasts"] if b["laterality"] == "R")
    assert left["malignancy_score"] > right["malignancy_score"]
    assert final["accession_number"] == study.accession_number
    assert final["instance_count"] == 4
    assert final["disclaimer"] and ("sintétic" in final["disclaimer"] or "SIN ENTRENAR" in final["disclaimer"])
    assert {b["laterality"] for b in final["breasts"]} == {"R", "L"}
    timeline = [event["event_type"] for event in final["events"]]
    assert timeline.index("study.inferred") < timeline.index("notification.sent")
    assert Counter(timeline)["instance.stored"] == 4 and Counter(timeline)["study.completed"] == 1
    # One correlation id runs through every event of the study, from the first instance to the e-mail.
    assert len({ev["payload"]["correlation_id"] for ev in final["events"]}) == 1, final["events"]

    # The study is listed with both lights.
    listed = api_json(api, "/studies")
    assert any(s["study_uid"] == study.study_uid and s["triage_light"] == final["triage_light"] for s in listed["items"])

    # The e-mail reached the radiologist: accession number, lights, link, model notice, no patient name.
    mails = wait_for(lambda: sink.to(RADIOLOGIST), 30, "the e-mail to the radiologist")
    assert len(mails) == 1
    text = body_text(mails[0])
    assert study.accession_number in text and study.study_uid in text
    assert "sintétic" in text.lower() or "sin entrenar" in text.lower()
    patient_name = str(study.views[0].dataset.PatientName)
    assert patient_name.split("^")[0] not in text

    # The same study sent again is stored once and notified once.
    output = storescu(folder, dicom_port)
    assert output.count("Received Store Response (Success)") == 4, output
    time.sleep(quiet_seconds + 4)
    again = api_json(api, f"/studies/{study.study_uid}")
    counts = Counter(event["event_type"] for event in again["events"])
    assert counts["instance.stored"] == 4
    assert counts["study.completed"] == 1
    assert counts["notification.sent"] == 1
    assert len(sink.to(RADIOLOGIST)) == 1
    assert again["state"] == "notified"
    return again


#: A second hospital's modality (``MDD_SENDERS``): it sends the very same study, UIDs and all.
SECOND_HOSPITAL = "HOSP-B"
SECOND_HOSPITAL_AE = "MAMO_HOSP_B"
SECOND_HOSPITAL_SENDERS = json.dumps({SECOND_HOSPITAL_AE: {"hospital_id": SECOND_HOSPITAL, "addresses": ["127.0.0.1"]}})


def run_second_hospital_scenario(
    *,
    api: str,
    dicom_port: int,
    study: SyntheticStudy,
    folder: Path,
    sink: SmtpSink,
    processes: list[tuple[subprocess.Popen[bytes], Path]],
    first: dict,
) -> dict:
    """The study ``first`` came from one hospital; the same files (same Study, Series and SOP Instance
    UIDs) sent by another hospital's modality make that hospital's own study, which reaches its own
    two lights and its own e-mail, while the first hospital's study stays exactly as it was.

    Returns the second hospital's study document.
    """
    uid, first_hospital = study.study_uid, first["hospital_id"]
    assert first_hospital != SECOND_HOSPITAL
    mails_before = len(sink.to(RADIOLOGIST))

    output = storescu(folder, dicom_port, calling_ae=SECOND_HOSPITAL_AE)
    assert output.count("Received Store Response (Success)") == 4, output

    def notified() -> dict | None:
        doc = api_json(api, f"/studies/{uid}?hospital_id={SECOND_HOSPITAL}")
        return doc if doc and doc["state"] == "notified" else None

    second = wait_for(notified, PIPELINE_TIMEOUT, "the second hospital's study to be notified", processes)
    assert second["hospital_id"] == SECOND_HOSPITAL and second["study_uid"] == uid
    assert second["status_light"] == "GREEN" and second["triage_light"] == first["triage_light"]
    assert second["instance_count"] == 4 and len(second["derived_views"]) == 4
    assert {event["payload"]["hospital_id"] for event in second["events"]} == {SECOND_HOSPITAL}
    counts = Counter(event["event_type"] for event in second["events"])
    assert counts["instance.stored"] == 4 and counts["study.completed"] == 1 and counts["notification.sent"] == 1
    assert not {e["event_id"] for e in second["events"]} & {e["event_id"] for e in first["events"]}
    correlation = {e["payload"]["correlation_id"] for e in second["events"]}
    assert len(correlation) == 1 and not correlation & {e["payload"]["correlation_id"] for e in first["events"]}

    # The first hospital's study is untouched: same timeline, same lights.
    again = api_json(api, f"/studies/{uid}?hospital_id={first_hospital}")
    assert again is not None
    assert [e["event_id"] for e in again["events"]] == [e["event_id"] for e in first["events"]]
    assert (again["status_light"], again["triage_light"], again["instance_count"]) == (
        first["status_light"], first["triage_light"], first["instance_count"])

    # The UID alone is ambiguous for someone who sees both hospitals: the API says so and names them.
    ambiguous = httpx.get(f"{api}/studies/{uid}", timeout=10, headers={"Authorization": f"Bearer {API_KEY}"})
    assert ambiguous.status_code == 409, ambiguous.text
    assert first_hospital in ambiguous.json()["detail"] and SECOND_HOSPITAL in ambiguous.json()["detail"]
    listed = api_json(api, "/studies")
    assert sorted(s["hospital_id"] for s in listed["items"] if s["study_uid"] == uid) == sorted([first_hospital, SECOND_HOSPITAL])

    # The second hospital's radiologist e-mail links to its own study.
    mails = wait_for(lambda: (m := sink.to(RADIOLOGIST)) and len(m) > mails_before and m, 60, "the second hospital's e-mail")
    assert len(mails) == mails_before + 1
    assert f"hospital_id={SECOND_HOSPITAL}" in body_text(mails[-1])
    return second
