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
    payload: dict = Field(description=(
        "El evento con los campos que el rol puede leer; `withheld` nombra los retenidos / the event with the "
        "fields the role may read; `withheld` names those held back (report text, patient key… for staff and providers)"
    ))


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


class ViewImage(BaseModel):
    """Links to one view's derived images (presigned on MinIO, an authenticated route otherwise)."""

    sop_instance_uid: str
    laterality: str | None
    view_position: str | None
    crop_url: str | None = Field(description="Recorte de la mama / breast crop")
    magma_url: str | None = Field(description="Imagen en falso color / false-colour image")
    mask_url: str | None = Field(description="Máscara de segmentación / segmentation mask")


class PatientIdentity(BaseModel):
    """Patient identity read from the stored DICOM header; only for doctors and administrators."""

    patient_name: str = Field(description="Nombre del paciente / patient name")
    patient_id: str = Field(description="Identificador del paciente / patient ID")
    curp: str | None = Field(description="CURP si el encabezado la trae / CURP when the header has it")


class StudyDetailView(StudyDetail):
    """A study as the caller may see it: with thumbnails, and with identity only when allowed."""

    thumbnails: list[ViewImage] = Field(default_factory=list, description="Miniaturas por vista / per-view thumbnails")
    patient: PatientIdentity | None = Field(
        None, description="Solo médicos y administradores / only doctors and administrators"
    )


class StudyPage(BaseModel):
    """One page of the study list; pass ``next_cursor`` as ``cursor`` to get the next one."""

    items: list[StudySummary]
    next_cursor: str | None = Field(description="Cursor opaco de la página siguiente; null al final / next page cursor")


class ReportRequest(BaseModel):
    """A radiologist's or provider's report of a study."""

    model_config = {"extra": "forbid"}

    birads: int = Field(ge=0, le=6, description="Categoría BI-RADS 0-6 / BI-RADS category 0-6")
    text: str = Field("", max_length=20000, description="Texto del reporte / report text")


class ReportAccepted(BaseModel):
    """The report was accepted and published as ``study.reported``."""

    event_id: str
    study_uid: str
    birads: int
    reporter: str


class AssignmentRequest(BaseModel):
    """Assign a study to a reading provider (what notify's provider offer decided)."""

    model_config = {"extra": "forbid"}

    provider_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$", description="Id del proveedor / provider id")


class AssignmentEntry(BaseModel):
    """A study assigned to a provider."""

    study_uid: str
    hospital_id: str
    provider_id: str
    assigned_by: str
    assigned_at: datetime


class AuditEntry(BaseModel):
    """One read or write of patient data."""

    id: int
    at: datetime
    principal: str = Field(description="user:NOMBRE o apikey:NOMBRE / user:NAME or apikey:NAME")
    role: str
    action: str
    study_uid: str | None
    hospital_id: str | None = None
    client: str = Field(description="Dirección del cliente / client address")
    detail: str


class TokenResponse(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Segundos de vigencia / lifetime in seconds")


class Me(BaseModel):
    """Who the caller is."""

    name: str
    kind: str
    role: str
    hospitals: list[str]
    provider_id: str | None
    expires_at: datetime | None = None
