"""Response models of the status API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

MODEL_NOTICE = (
    "Las salidas de IA provienen de un modelo de demostración entrenado con datos sintéticos (o sin "
    "entrenar); no es un dispositivo clínico validado. / AI outputs come from a demonstration model "
    "trained on synthetic data (or untrained); not a clinically validated device."
)


class StudySummary(BaseModel):
    """One row of the study list."""

    study_uid: str
    hospital_id: str
    accession_number: str
    state: str
    state_label: str
    status_light: str
    triage_light: str | None = Field(description="RED, YELLOW, GREEN or null before inference")
    triage_reason: str | None
    overdue: bool
    failed: bool
    instance_count: int
    created_at: datetime
    updated_at: datetime


class TimelineEntry(BaseModel):
    """One event in a study's timeline."""

    event_id: str
    event_type: str
    producer: str
    occurred_at: datetime
    received_at: datetime
    payload: dict


class StudyDetail(StudySummary):
    """A study with its AI outputs, derived images and event timeline."""

    failure_reason: str | None
    breasts: list[dict] | None
    derived_views: list[dict] | None
    quality_flags: list[str] | None
    model_name: str | None
    model_version: str | None
    model_trained: bool | None
    model_trained_on: str | None
    disclaimer: str | None
    model_notice: str = MODEL_NOTICE
    events: list[TimelineEntry]


class Health(BaseModel):
    """Liveness and readiness."""

    status: str
    ready: bool


class NotificationEntry(BaseModel):
    """One entry of the notification log: who was told what about a study, through which channel."""

    event_id: str
    study_uid: str
    hospital_id: str
    accession_number: str
    rule: str = Field(description="Regla que lo decidió / rule that decided it")
    channel: str = Field(description="email, sms, webhook, chat, pacs…")
    recipient: str = Field(description="Destinatario sin credenciales / recipient, without credentials")
    status: str = Field(description="sent o failed / sent or failed")
    detail: str = Field(description="Motivo de la falla / why it failed")
    producer: str
    occurred_at: datetime
    received_at: datetime
