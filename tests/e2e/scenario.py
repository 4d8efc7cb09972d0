"""The end-to-end scenario both modes must pass: a modality sends a study, lights come on."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

from shared.synth import SyntheticStudy
from tests.e2e.harness import SmtpSink, api_json, body_text, echoscu_ok, storescu, wait_for

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
    assert {e["correlation_id"] for e in (ev["payload"] for ev in final["events"])} == {final["correlation_id"]} if "correlation_id" in final else True

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
