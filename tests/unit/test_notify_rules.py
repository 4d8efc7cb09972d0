"""Who is told what, and what the message says."""

from shared.events import BreastResult, StudyFailed, StudyInferred, producer
from shared.settings import Settings
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
