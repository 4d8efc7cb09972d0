"""Event contracts: the versioned envelope and every event of the pipeline.

Payloads carry object-store keys and pseudonymous identifiers, never pixel data and never raw
patient identity (name, CURP, birth date).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal, Union
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Light = Literal["RED", "YELLOW", "GREEN"]
Laterality = Literal["R", "L"]
SCHEMA_VERSION = 1


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class Producer(BaseModel):
    """Which service (and version) published an event."""

    service: str
    version: str


class Event(BaseModel):
    """The envelope every event shares. Consumers de-duplicate on ``event_id``."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID = Field(default_factory=uuid4)
    event_type: str
    schema_version: int = SCHEMA_VERSION
    occurred_at: datetime = Field(default_factory=utc_now)
    study_uid: str
    hospital_id: str
    correlation_id: str
    producer: Producer
    accession_number: str = ""


class ViewRef(BaseModel):
    """One stored image of a study."""

    sop_instance_uid: str
    series_instance_uid: str
    object_key: str
    laterality: str | None = None
    view_position: str | None = None


class InstanceStored(Event):
    """An instance is durable in the object store (published by ingest)."""

    event_type: Literal["instance.stored"] = "instance.stored"
    sop_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    laterality: str | None = None
    view_position: str | None = None
    object_key: str
    size_bytes: int
    sha256: str
    patient_key: str = Field(description="Pseudonymous patient key (keyed HMAC, shared/pseudonyms.py), never the PatientID")
    calling_ae: str = ""


class StudyCompleted(Event):
    """All expected views arrived, or the study went quiet (published by ingest)."""

    event_type: Literal["study.completed"] = "study.completed"
    patient_key: str = ""
    reason: Literal["all_views", "quiet_period"]
    views: list[ViewRef]


class ViewGeometry(BaseModel):
    """Where the model input of a view came from in the stored image, so that a point of the input
    can be mapped back onto the image (results marks).

    The input is the crop ``[top:bottom, left:right]`` of the image after it was mirrored left-right
    when ``mirrored`` (chest wall on the left), resized to the model's input size.
    """

    rows: int = Field(gt=0)
    columns: int = Field(gt=0)
    top: int = Field(ge=0)
    bottom: int = Field(gt=0)
    left: int = Field(ge=0)
    right: int = Field(gt=0)
    mirrored: bool


class DerivedView(BaseModel):
    """Preprocessing outputs of one view, as object-store keys in the derived bucket."""

    sop_instance_uid: str
    laterality: str | None
    view_position: str | None
    mask_key: str
    crop_key: str
    magma_key: str
    input_key: str
    breast_area_fraction: float
    flags: list[str] = Field(default_factory=list)
    geometry: ViewGeometry | None = None
    not_evaluable: list[str] = Field(
        default_factory=list,
        description="Why the model must not score this view (shared/imaging/applicability.py codes); empty: it may",
    )


class StudyPreprocessed(Event):
    """Every view of the study is segmented, cropped and ready for the model (preprocess)."""

    event_type: Literal["study.preprocessed"] = "study.preprocessed"
    segmentation_backend: str
    views: list[DerivedView]
    quality_flags: list[str] = Field(default_factory=list)


class BreastResult(BaseModel):
    """Model outputs for one breast that the model scored (both views evaluable)."""

    laterality: Laterality
    malignancy_score: float = Field(ge=0, le=1)
    birads: int = Field(ge=0, le=6)
    density: Literal["A", "B", "C", "D"]
    views_used: list[str]
    ood_score: float | None = Field(
        None, description="Distance to the training features over its calibrated threshold; > 1 is out of distribution"
    )
    in_distribution: bool | None = Field(None, description="ood_score ≤ 1; None when the model has no such check")


class NotEvaluated(BaseModel):
    """An image or a breast the model did not score, and why (bilingual label)."""

    laterality: str | None = None
    view_position: str | None = None
    sop_instance_uid: str | None = None
    reason: str = Field(description="Code: shared/imaging/applicability.py, or breast_without_two_views")
    label: str = Field(description="Spanish / English")


class ImageRegion(BaseModel):
    """A region of one stored image that drove the model's malignancy output (its class activation).

    Coordinates are those of DICOM SCOORD on the stored image: (column, row), (0, 0) the top-left
    corner of the top-left pixel. ``outline`` is closed (its last point is its first).
    """

    sop_instance_uid: str
    laterality: Laterality
    view: Literal["CC", "MLO"]
    center: tuple[float, float]
    outline: list[tuple[float, float]] = Field(min_length=4)
    activation: float = Field(ge=0, le=1, description="Peak of the normalised activation map inside the region")


class StudyInferred(Event):
    """Model outputs and the triage light (published by infer)."""

    event_type: Literal["study.inferred"] = "study.inferred"
    breasts: list[BreastResult]
    triage_light: Light
    triage_reason: str
    model_name: str
    model_version: str
    model_trained: bool
    model_trained_on: str
    disclaimer: str
    regions: list[ImageRegion] = Field(
        default_factory=list, description="Where the model looked, for breasts it does not call low suspicion"
    )
    not_evaluated: list[NotEvaluated] = Field(default_factory=list)


class StudyFailed(Event):
    """A stage gave up on the study (after its retries)."""

    event_type: Literal["study.failed"] = "study.failed"
    stage: str
    reason: str


class StudyOverdue(Event):
    """A stage exceeded its deadline (status API watchdog)."""

    event_type: Literal["study.overdue"] = "study.overdue"
    stage: str
    deadline_seconds: float


class StudyReported(Event):
    """A radiologist or provider reported the study."""

    event_type: Literal["study.reported"] = "study.reported"
    birads: int = Field(ge=0, le=6)
    text: str = ""
    reporter: str = ""


class NotificationSent(Event):
    """A notification was delivered, or finally failed (published by notify)."""

    event_type: Literal["notification.sent"] = "notification.sent"
    rule: str
    channel: str
    recipient: str
    status: Literal["sent", "failed"]
    detail: str = ""


class OfferedInstance(BaseModel):
    """One image of a study offered to a provider, with its time-limited download link."""

    sop_instance_uid: str
    series_instance_uid: str
    laterality: str | None = None
    view_position: str | None = None
    size_bytes: int | None = None
    sha256: str | None = Field(None, description="SHA-256 of the file behind ``url``, to check the download")
    url: str | None = Field(None, description="Presigned GET URL; None where the store has no download links")


class ProviderStudyOffer(Event):
    """A study offered to an external provider, by signed webhook and/or its own topic (notify).

    Carries no patient identity: for de-identifying providers ``study_uid`` and
    ``accession_number`` are the de-identified ones and the links point to de-identified copies.
    """

    event_type: Literal["provider.study"] = "provider.study"
    provider_id: str
    delivery_id: UUID = Field(description="Same for every send of this study to this provider: de-duplicate on it")
    deidentified: bool
    instances: list[OfferedInstance]
    links_expire_at: datetime | None = None
    links_note: str = Field("", description="Why there are no download links, when there are none")


INTERNAL_EVENT_CLASSES: tuple[type[Event], ...] = (
    InstanceStored,
    StudyCompleted,
    StudyPreprocessed,
    StudyInferred,
    StudyFailed,
    StudyOverdue,
    StudyReported,
    NotificationSent,
)
# Provider offers travel only on each provider's own topic (``mdd.provider.{provider_id}``).
EVENT_CLASSES: tuple[type[Event], ...] = (*INTERNAL_EVENT_CLASSES, ProviderStudyOffer)
AnyEvent = Annotated[Union[EVENT_CLASSES], Field(discriminator="event_type")]  # type: ignore[valid-type]
EVENT_TYPES: dict[str, type[Event]] = {cls.model_fields["event_type"].default: cls for cls in INTERNAL_EVENT_CLASSES}
"""The events of the pipeline's internal topics, by type."""
_any_event = TypeAdapter(AnyEvent)


def parse_event(raw: bytes | str) -> Event:
    """Decode a JSON message into its event class (raises ``pydantic.ValidationError``)."""
    return _any_event.validate_json(raw)


class DeadLetter(BaseModel):
    """A message that could not be processed, with its original payload, error and stage."""

    dead_letter_id: UUID = Field(default_factory=uuid4)
    occurred_at: datetime = Field(default_factory=utc_now)
    stage: str
    source_topic: str
    error: str
    attempts: int
    study_uid: str | None = None
    hospital_id: str | None = None
    payload: str


def follow_up(cause: Event, event_cls: type[Event], service: str, **fields: object) -> Event:
    """Build the next event of a study, carrying study, hospital and correlation id forward."""
    return event_cls(
        study_uid=cause.study_uid,
        hospital_id=cause.hospital_id,
        correlation_id=cause.correlation_id,
        accession_number=cause.accession_number,
        producer=producer(service),
        **fields,
    )


def producer(service: str) -> Producer:
    """The producer stamp of one of our services."""
    from shared import __version__

    return Producer(service=service, version=__version__)
