"""Who is told what, and what the message says."""

from shared.events import BreastResult, StudyFailed, StudyInferred, StudyOverdue, producer
from shared.settings import Settings
from services.notify.config import RuleBook, parse_rules
from services.notify.rules import notifications_for

ENVELOPE = dict(study_uid="1.2.3", hospital_id="H", correlation_id="c", producer=producer("infer"), accession_number="ACC77")


def inferred(light: str) -> StudyInferred:
    return StudyInferred(
        **ENVELOPE,
        breasts=[BreastResult(laterality="L", malignancy_score=0.91, birads=4, density="C", views_used=["CC", "MLO"])],
        triage_light=light, triage_reason="Sospechoso: mama izquierda", model_name="twoview", model_version="0.1.0",
        model_trained=True, model_trained_on="fantomas sintéticos", disclaimer="Modelo de demostración entrenado con fantomas sintéticos",
    )


def settings() -> Settings:
    return Settings(notify_emails=["radiologia@h.mx"], notify_red_emails=["oncologia@h.mx"], public_base_url="https://mdd.h.mx")


def test_red_light_reaches_oncology_as_well() -> None:
    planned = notifications_for(settings(), inferred("RED"))
    assert [(n.rule, n.recipient) for n in planned] == [("result_ready", "radiologia@h.mx"), ("triage_red", "oncologia@h.mx")]


def test_green_light_only_reaches_the_result_recipients() -> None:
    assert [n.recipient for n in notifications_for(settings(), inferred("GREEN"))] == ["radiologia@h.mx"]


def test_message_has_accession_link_scores_and_model_notice() -> None:
    message = notifications_for(settings(), inferred("RED"))[0]
    assert "ROJO" in message.subject and "ACC77" in message.subject
    assert "https://mdd.h.mx/studies/1.2.3" in message.body
    assert "0.91" in message.body and "BI-RADS 4" in message.body
    assert "sintéticos" in message.body


def test_failures_reach_the_result_recipients_with_the_reason() -> None:
    failed = StudyFailed(**ENVELOPE, stage="preprocess", reason="píxeles ilegibles")
    [message] = notifications_for(settings(), failed)
    assert message.rule == "study_failed" and "píxeles ilegibles" in message.body


def test_no_recipients_means_no_notifications() -> None:
    assert notifications_for(Settings(), inferred("RED")) == []


# --- Rules per hospital from a rules file

RULES = {
    "sms_gateway": "twiliogws://AC1:secret@sms.example.mx/+526460000000",
    "hospitals": {
        "H": {
            "recipients": {
                "onco": {"name": "Oncología", "channels": ["+526461110001", "onco@h.mx"]},
                "radio": {"channels": ["+526461110002", "radio@h.mx"]},
                "doctor": {"language": "en", "channels": ["doctor@h.mx"]},
                "admin": {"channels": ["admin@h.mx"]},
                "it": {"channels": ["it@h.mx", "jsons://hooks.h.mx/mdd"]},
            },
            "rules": [
                {"id": "triage_red", "event": "study.inferred", "lights": ["RED"], "recipients": ["onco", "radio"], "channels": ["sms", "email"]},
                {"id": "result_ready", "event": "study.inferred", "recipients": ["doctor"]},
                {"id": "overdue", "event": "study.overdue", "recipients": ["admin"]},
                {"id": "failed", "event": "study.failed", "recipients": ["it"]},
                {"id": "digest", "event": "daily_digest", "at": "07:00", "recipients": ["radio"]},
            ],
        },
        "*": {"recipients": {"central": {"channels": ["central@mdd.mx"]}}, "rules": [{"id": "any", "event": "study.failed", "recipients": ["central"]}]},
    },
}


def book() -> RuleBook:
    return parse_rules(RULES, settings(), "test")


def test_red_reaches_oncologist_and_radiologist_by_sms_and_email_and_the_doctor_by_email() -> None:
    planned = notifications_for(settings(), inferred("RED"), book())
    assert [(n.rule, n.recipient, n.channel, n.target) for n in planned] == [
        ("triage_red", "onco", "sms", "+526461110001"),
        ("triage_red", "onco", "email", "onco@h.mx"),
        ("triage_red", "radio", "sms", "+526461110002"),
        ("triage_red", "radio", "email", "radio@h.mx"),
        ("result_ready", "doctor", "email", "doctor@h.mx"),
    ]
    assert len({n.key_suffix for n in planned}) == len(planned)
    sms = planned[0]
    assert sms.subject == "" and "ROJO" in sms.body and "ACC77" in sms.body and sms.url.endswith("/+526461110001")
    assert planned[1].label == "onco <onco@h.mx>"
    doctor = planned[-1]
    assert "RED triage light" in doctor.subject and "NOTICE:" in doctor.body  # English for the English-speaking doctor


def test_green_reaches_only_the_ordering_doctor() -> None:
    assert [(n.rule, n.recipient) for n in notifications_for(settings(), inferred("GREEN"), book())] == [("result_ready", "doctor")]


def test_failures_go_to_it_and_overdue_studies_to_the_administrator() -> None:
    failed = notifications_for(settings(), StudyFailed(**ENVELOPE, stage="infer", reason="x"), book())
    assert [(n.recipient, n.channel) for n in failed] == [("it", "email"), ("it", "webhook")]
    overdue = notifications_for(settings(), StudyOverdue(**ENVELOPE, stage="infer", deadline_seconds=600), book())
    assert [(n.rule, n.recipient) for n in overdue] == [("overdue", "admin")]


def test_hospitals_without_rules_of_their_own_follow_the_star_rules() -> None:
    other = StudyFailed(**(ENVELOPE | {"hospital_id": "OTRO"}), stage="infer", reason="x")
    assert [n.recipient for n in notifications_for(settings(), other, book())] == ["central"]
    assert notifications_for(settings(), inferred("RED").model_copy(update={"hospital_id": "OTRO"}), book()) == []
