"""The timeline shows each role only what it may read: no report text, patient key or identity for staff and providers."""

from __future__ import annotations

import pytest

from shared.events import (
    INTERNAL_EVENT_CLASSES, BreastResult, DerivedView, Event, InstanceStored, NotificationSent, StudyCompleted,
    StudyFailed, StudyInferred, StudyOverdue, StudyPreprocessed, StudyReported, ViewRef,
)
from shared.settings import Settings
from shared.synth import SyntheticStudy
from services.status_api.projector import project
from services.status_api.visibility import ENVELOPE, IDENTITY_ONLY, SHARED, STAFF_ONLY
from tests.unit.test_status_api_auth import ADMIN, World, envelope

PATIENT_CURP = "GOMM800101MDFRRR09"
REPORT_TEXT = f"Paciente GOMEZ MARTINEZ^MARIA, CURP {PATIENT_CURP}: calcificaciones benignas"
PATIENT_KEY = "clave-paciente-0123456789abcdef"
REPORTER = "user:dra.lopez (LECTURA-1)"
RECIPIENT = "jefa.radiologia@hospital-a.mx"
MODALITY_AE = "MAMO_SALA_3"


def events_of_every_type(uid: str) -> dict[str, Event]:
    """One event of each internal type for study ``uid`` of HOSP-A, its sensitive fields set to recognisable values."""
    base = envelope(uid, "HOSP-A", "ACC-A")
    view = DerivedView(sop_instance_uid=f"{uid}.1", laterality="L", view_position="CC", mask_key="m", crop_key="c",
                       magma_key="g", input_key="i", breast_area_fraction=0.4)
    breast = BreastResult(laterality="L", malignancy_score=0.1, birads=2, density="B", views_used=["CC", "MLO"])
    events: list[Event] = [
        InstanceStored(**base, sop_instance_uid=f"{uid}.1", series_instance_uid=f"{uid}.0", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
                       transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG", object_key="k", size_bytes=1, sha256="x",
                       patient_key=PATIENT_KEY, calling_ae=MODALITY_AE),
        StudyCompleted(**base, patient_key=PATIENT_KEY, reason="all_views",
                       views=[ViewRef(sop_instance_uid=f"{uid}.1", series_instance_uid=f"{uid}.0", object_key="k")]),
        StudyPreprocessed(**base, segmentation_backend="otsu", views=[view]),
        StudyInferred(**base, breasts=[breast], triage_light="GREEN", triage_reason="baja sospecha", model_name="m",
                      model_version="1", model_trained=True, model_trained_on="fantomas sintéticos", disclaimer="demo"),
        StudyFailed(**base, stage="notify", reason="sin canal / no channel"),
        StudyOverdue(**base, stage="infer", deadline_seconds=60),
        StudyReported(**base, birads=2, text=REPORT_TEXT, reporter=REPORTER),
        NotificationSent(**base, rule="rojo", channel="email", recipient=RECIPIENT, status="failed", detail=f"rebote {RECIPIENT}"),
    ]
    return {event.event_type: event for event in events}


def test_every_field_of_every_event_has_a_decided_audience() -> None:
    for cls in INTERNAL_EVENT_CLASSES:
        event_type = cls.model_fields["event_type"].default
        decided = ENVELOPE | SHARED[event_type] | STAFF_ONLY.get(event_type, frozenset()) | IDENTITY_ONLY.get(event_type, frozenset())
        assert set(cls.model_fields) == decided, f"{event_type}: decide who reads {set(cls.model_fields) ^ decided}"


@pytest.fixture
def timeline_world(settings: Settings, four_view_study: SyntheticStudy) -> World:
    world = World(settings, four_view_study)
    world.sent = events_of_every_type(world.study_a)  # type: ignore[attr-defined]
    for event in world.sent.values():  # type: ignore[attr-defined]
        project(world.engine, event)
    assert world.client.post(f"/studies/{world.study_a}/assignments", json={"provider_id": "LECTURA-1"},
                             headers=ADMIN).status_code == 201
    return world


ROLES = {"admin": None, "doctor": "doctor_a", "hospital_staff": "staff_a", "provider": "lector"}
#: What each role must not read, per event type: (field, the sensitive value it carries).
SENSITIVE = {
    "instance.stored": [("patient_key", PATIENT_KEY), ("calling_ae", MODALITY_AE)],
    "study.completed": [("patient_key", PATIENT_KEY)],
    "study.reported": [("text", REPORT_TEXT), ("reporter", REPORTER)],
    "notification.sent": [("recipient", RECIPIENT), ("detail", f"rebote {RECIPIENT}")],
}
WHO_READS = {"patient_key": {"admin", "doctor"}, "text": {"admin", "doctor"},
             "calling_ae": {"admin", "doctor", "hospital_staff"}, "reporter": {"admin", "doctor", "hospital_staff"},
             "recipient": {"admin", "doctor", "hospital_staff"}, "detail": {"admin", "doctor", "hospital_staff"}}


@pytest.mark.parametrize("event_type", [cls.model_fields["event_type"].default for cls in INTERNAL_EVENT_CLASSES])
@pytest.mark.parametrize("role", list(ROLES))
def test_timeline_event_as_each_role_reads_it(timeline_world: World, role: str, event_type: str) -> None:
    world = timeline_world
    headers = ADMIN if ROLES[role] is None else world.token(ROLES[role])
    response = world.client.get(f"/studies/{world.study_a}", headers=headers)
    assert response.status_code == 200
    sent = world.sent[event_type].model_dump(mode="json")
    [entry] = [e for e in response.json()["events"] if e["event_id"] == sent["event_id"]]
    payload = entry["payload"]
    # What a role may read arrives unchanged: the study, its lights, the model's outputs.
    for name in ENVELOPE | SHARED[event_type]:
        assert payload[name] == sent[name], name
    for name, value in SENSITIVE.get(event_type, []):
        if role in WHO_READS[name]:
            assert payload[name] == value
        else:
            assert name not in payload and name in payload["withheld"]
    if role in ("hospital_staff", "provider"):  # not anywhere in the answer, not even in another field
        assert REPORT_TEXT not in response.text and PATIENT_CURP not in response.text and PATIENT_KEY not in response.text
        assert world.patient_name not in response.text and response.json()["patient"] is None
    if role == "provider":
        assert RECIPIENT not in response.text and MODALITY_AE not in response.text and REPORTER not in response.text


@pytest.mark.parametrize("role", list(ROLES))
def test_notification_log_hides_recipients_from_providers(timeline_world: World, role: str) -> None:
    world = timeline_world
    headers = ADMIN if ROLES[role] is None else world.token(ROLES[role])
    for url in (f"/studies/{world.study_a}/notifications", "/notifications"):
        entries = [e for e in world.client.get(url, headers=headers).json() if e["study_uid"] == world.study_a]
        failed = next(e for e in entries if e["status"] == "failed")
        assert failed["channel"] == "email" and failed["rule"] == "rojo"
        assert (failed["recipient"], failed["detail"]) == (
            ("", "") if role == "provider" else (RECIPIENT, f"rebote {RECIPIENT}")
        ), url
