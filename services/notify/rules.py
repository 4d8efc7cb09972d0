"""Who is told what: the rules of the first version, and the messages they send (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import Event, StudyFailed, StudyInferred
from shared.settings import Settings

LIGHT_NAMES = {"RED": ("ROJO", "RED"), "YELLOW": ("AMARILLO", "YELLOW"), "GREEN": ("VERDE", "GREEN")}


@dataclass(frozen=True)
class Notification:
    """One message for one recipient, decided by one rule."""

    rule: str
    channel: str
    recipient: str
    subject: str
    body: str

    @property
    def key_suffix(self) -> str:
        return f"{self.rule}:{self.channel}:{self.recipient}"


def _study_link(settings: Settings, study_uid: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/studies/{study_uid}"


def _inferred_message(settings: Settings, event: StudyInferred) -> tuple[str, str]:
    light_es, light_en = LIGHT_NAMES[event.triage_light]
    subject = f"[MDD] Semáforo {light_es} / {light_en} triage light — estudio {event.accession_number or event.study_uid}"
    breasts = "\n".join(
        f"  - Mama {'derecha' if b.laterality == 'R' else 'izquierda'} / {'right' if b.laterality == 'R' else 'left'}"
        f" breast: puntuación / score {b.malignancy_score:.2f}, BI-RADS {b.birads}, densidad / density {b.density}"
        for b in event.breasts
    )
    body = (
        f"Resultados de IA listos / AI results ready.\n\n"
        f"Estudio / study: {event.study_uid}\nAcceso / accession: {event.accession_number or '-'}\n"
        f"Semáforo de triaje / triage light: {light_es} / {light_en}\n{event.triage_reason}\n\n{breasts}\n\n"
        f"Ver / view: {_study_link(settings, event.study_uid)}\n\n"
        f"Modelo / model: {event.model_name} {event.model_version} ({event.model_trained_on})\n"
        f"{event.disclaimer}\n"
    )
    return subject, body


def notifications_for(settings: Settings, event: Event) -> list[Notification]:
    """The notifications an event calls for, under the configured recipients."""
    if isinstance(event, StudyInferred):
        subject, body = _inferred_message(settings, event)
        planned = [Notification("result_ready", "email", to, subject, body) for to in settings.notify_emails]
        if event.triage_light == "RED":
            planned += [Notification("triage_red", "email", to, subject, body) for to in settings.notify_red_emails]
        return planned
    if isinstance(event, StudyFailed):
        subject = f"[MDD] Estudio con falla / study failed — {event.study_uid}"
        body = (
            f"La etapa {event.stage} no pudo procesar el estudio / stage {event.stage} failed.\n"
            f"Motivo / reason: {event.reason}\nVer / view: {_study_link(settings, event.study_uid)}\n"
        )
        return [Notification("study_failed", "email", to, subject, body) for to in settings.notify_emails]
    return []
