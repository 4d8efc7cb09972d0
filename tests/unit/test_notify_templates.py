"""Message texts from the Jinja2 templates: both languages, the model notice, nothing private in SMS."""

from __future__ import annotations

import pytest

from shared.events import StudyFailed, StudyOverdue
from shared.settings import Settings
from shared.synth import SyntheticStudy
from services.notify.messages import (
    LANGUAGES,
    failed_context,
    inferred_context,
    overdue_context,
    render,
)
from tests.unit.test_notify_rules import ENVELOPE, inferred

SETTINGS = Settings(public_base_url="https://mdd.h.mx/")
CURP = "GARA800101MBCRRN09"


def test_every_template_renders_in_both_languages_for_every_kind() -> None:
    contexts = {
        "inferred": inferred_context(SETTINGS, inferred("YELLOW")),
        "failed": failed_context(SETTINGS, StudyFailed(**ENVELOPE, stage="infer", reason="sin vistas")),
        "overdue": overdue_context(SETTINGS, StudyOverdue(**ENVELOPE, stage="preprocess", deadline_seconds=900)),
    }
    for language in LANGUAGES:
        for template, context in contexts.items():
            for kind in ("email", "sms", "webhook", "chat"):
                message = render(template, kind, language, context)
                assert "https://mdd.h.mx/studies/1.2.3" in message.body
                assert "ACC77" in message.body
                assert (message.subject == "") == (kind == "sms")


@pytest.mark.parametrize(
    ("language", "words"),
    [("es", ["Semáforo ROJO", "Mama izquierda", "puntuación 0.91", "AVISO:"]), ("en", ["RED triage light", "Left breast", "score 0.91", "NOTICE:"])],
)
def test_result_email_speaks_the_recipients_language_and_carries_the_disclaimer(language: str, words: list[str]) -> None:
    event = inferred("RED")
    message = render("inferred", "email", language, inferred_context(SETTINGS, event))
    text = message.subject + "\n" + message.body
    for word in words:
        assert word in text
    assert event.disclaimer in message.body and event.model_trained_on in message.body


def test_sms_is_one_short_line_with_accession_light_link_and_the_model_notice() -> None:
    es = render("inferred", "sms", "es", inferred_context(SETTINGS, inferred("RED"))).body
    assert es == (
        "MDD: semáforo ROJO, acceso ACC77. https://mdd.h.mx/studies/1.2.3?hospital_id=H "
        "Puntuación de un modelo de demostración entrenado con datos sintéticos; no es diagnóstico."
    )
    en = render("inferred", "sms", "en", inferred_context(SETTINGS, inferred("GREEN"))).body
    assert en.startswith("MDD: GREEN triage light, accession ACC77.") and "synthetic data" in en
    untrained = inferred("RED").model_copy(update={"model_trained": False, "disclaimer": "Modelo SIN ENTRENAR"})
    assert "SIN ENTRENAR" in render("inferred", "sms", "es", inferred_context(SETTINGS, untrained)).body
    # A model that needs no disclaimer gets none.
    clinical = inferred("RED").model_copy(update={"disclaimer": ""})
    assert "sintéticos" not in render("inferred", "sms", "es", inferred_context(SETTINGS, clinical)).body


def test_sms_never_carries_the_patient_name_or_curp_even_when_known(four_view_study: SyntheticStudy) -> None:
    name = str(four_view_study.views[0].dataset.PatientName)
    event = inferred("RED").model_copy(update={"accession_number": four_view_study.accession_number})
    # A caller that knows the patient (as the status API may) puts identity into the context.
    context = inferred_context(SETTINGS, event) | {
        "patient_name": name, "patient_curp": CURP, "reason": f"Sospechoso en {name}", "triage_reason": name,
    }
    for language in LANGUAGES:
        sms = render("inferred", "sms", language, context).body
        assert four_view_study.accession_number in sms and "/studies/1.2.3" in sms
        for part in [name, *name.replace("^", " ").split(), CURP]:
            assert part not in sms
        assert len(sms) < 320  # two SMS segments at most


def test_failure_and_overdue_messages_say_the_stage() -> None:
    failed = render("failed", "email", "es", failed_context(SETTINGS, StudyFailed(**ENVELOPE, stage="infer", reason="sin vistas")))
    assert "infer" in failed.body and "sin vistas" in failed.body and failed.subject.startswith("[MDD] Estudio con falla")
    overdue = render("overdue", "email", "en", overdue_context(SETTINGS, StudyOverdue(**ENVELOPE, stage="preprocess", deadline_seconds=900)))
    assert "15 min" in overdue.body and "preprocess" in overdue.subject
    sms = render("failed", "sms", "es", failed_context(SETTINGS, StudyFailed(**ENVELOPE, stage="infer", reason="Paciente GARCÍA")))
    assert "GARCÍA" not in sms.body  # the free-text reason stays out of SMS
