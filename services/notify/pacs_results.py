"""AI results back to the hospital's PACS: two DICOM SRs and a Secondary Capture mosaic per study.

For each ``study.inferred`` event whose hospital has a results PACS (``MDD_RESULTS_PACS_HOST`` or
``MDD_RESULTS_PACS``), the original instances are read from the object store and three objects
are built in the same study:

- a Mammography CAD SR (TID 4000, :mod:`services.notify.cad_sr`), what mammography review
  workstations read: BI-RADS and probability of cancer per breast, the regions where the model
  looked as outlined single image findings, the breast composition, the algorithm;
- a Comprehensive SR (TID 1500 Measurement Report), for IHE AI Results consumers: one measurement
  group (TID 1501) per breast with the malignancy score, BI-RADS category and ACR density, the
  model as algorithm (TID 4019), the source images, and a "Qualitative Evaluations" container with
  the coded triage light and the model's coded standing;
- a Secondary Capture image: the four views as a 2x2 mosaic under the triage light, with the
  model's regions drawn on them (:mod:`services.notify.mosaic`).

Both SRs say in codes that the model is a demonstration trained on synthetic images, not for
clinical use and not clinically validated (:mod:`services.notify.result_codes`). Their UIDs are
under ``MDD_UID_ROOT`` and derive from the result's content: a redelivered event rebuilds the same
instances, a changed result (other scores, light, regions, model) gets new SOP Instance UIDs and is
sent again. Each sent instance is recorded per destination and never sent twice. A PACS that fails
is retried with exponential backoff (``MDD_NOTIFY_SEND_ATTEMPTS``, ``MDD_NOTIFY_BACKOFF_SECONDS``);
after the last attempt a failed ``notification.sent`` is published and the event goes to the
dead-letter topic. The study itself does not fail: its results exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import highdicom as hd
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, MammographyCADSRStorage, SecondaryCaptureImageStorage
from sqlmodel import Field, Session, SQLModel

from shared import __version__
from shared.db import init_db
from shared.dicom_uids import DEFAULT_INSTANCE_UID_ROOT, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, derived_uid
from shared.dicom_vocabulary import STORED_STATUSES, slot_from_dataset
from shared.events import BreastResult, DeadLetter, NotificationSent, StudyInferred, follow_up, utc_now
from shared.runtime import ServiceContext
from shared.settings import DicomDestination, Settings
from shared.store import ObjectStore
from shared.topics import topic_for
from services.notify.adapters.pacs_store import (
    UNAVAILABLE_STATUSES, PacsStoreError, PacsUnavailable, describe, store_instances,
)
from shared.reliability.retry import AttemptsSpent, with_attempts
from shared.object_keys import result_key, study_prefix
from services.notify.cad_sr import CadOptions, build_cad_sr
from services.notify.mosaic import LIGHT_LABELS, Slot, ViewTile, render_mosaic, view_tile
from services.notify.result_codes import (
    BIRADS_CODES,
    BREAST_NAMES,
    DENSITY_CODES,
    DISCLAIMER,
    LIGHT_CODES,
    NOT_VALIDATED,
    RESULTS_AVAILABLE,
    RESULTS_MANUFACTURER,
    STATUS_LIGHT,
    SYNTHETIC_LABEL,
    TRIAGE_LIGHT,
    TRIAGE_REASON,
    mdd_coding_scheme,
    model_label,
    standing_statements,
)

__all__ = [
    "KINDS", "NOT_VALIDATED", "SYNTHETIC_LABEL", "PacsResultRecord", "PacsResults", "SourceImagesMissing",
    "build_cad", "build_sc", "build_sr", "destination_for", "load_sources", "register_pacs_results", "result_uids",
]

log = logging.getLogger("mdd.notify.pacs")
SERVICE = "notify"
GROUP = "notify-pacs"
KINDS: Final[tuple[str, ...]] = ("cad", "sr", "sc")
SR_SERIES_NUMBER, SC_SERIES_NUMBER, CAD_SERIES_NUMBER = 9901, 9902, 9903
RESULT_KEYS: Final[dict[str, str]] = {"sr": "sr.dcm", "sc": "overlay.dcm", "cad": "cad-sr.dcm"}
OUR_SOP_CLASSES: Final[frozenset[str]] = frozenset({ComprehensiveSRStorage, MammographyCADSRStorage, SecondaryCaptureImageStorage})
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
BREAST_COMPOSITION = hd.sr.CodedConcept("129715009", "SCT", "Breast composition")
#: Purpose of reference of the mosaic's source images (CID 7202).
SOURCE_FOR_PROCESSING = hd.sr.CodedConcept("121322", "DCM", "Source image for image processing operation")


class SourceImagesMissing(RuntimeError):
    """The object store holds no image of the study, so there is nothing to reference."""


class PacsResultRecord(SQLModel, table=True):
    """One result instance (SR or SC) accepted by one PACS; its presence means "do not resend"."""

    __tablename__ = "notify_pacs_results"

    result_key: str = Field(primary_key=True, description="SOP Instance UID @ destination")
    study_uid: str = Field(index=True)
    kind: str
    sop_instance_uid: str
    destination: str
    model_version: str
    status: int
    sent_at: datetime


@dataclass(frozen=True)
class ResultUids:
    """Series and SOP Instance UIDs of one result object."""

    series_uid: str
    sop_uid: str


@dataclass
class StudySources:
    """What the results need from the original study: image headers (no pixels) and view tiles."""

    headers: list[Dataset] = field(default_factory=list)
    views: dict[Slot, np.ndarray] = field(default_factory=dict)
    tiles: dict[Slot, ViewTile] = field(default_factory=dict)
    tile_sources: dict[Slot, str] = field(default_factory=dict)  # slot -> SOP Instance UID shown there


def content_fingerprint(event: StudyInferred) -> str:
    """A digest of everything the results say; it changes whenever their content would."""
    content = event.model_dump_json(
        include={"hospital_id", "study_uid", "breasts", "triage_light", "triage_reason", "model_name", "model_version",
                 "model_trained", "model_trained_on", "disclaimer", "regions"}
    )
    return hashlib.sha256(content.encode()).hexdigest()


def result_uids(event: StudyInferred, kind: str, root: str = DEFAULT_INSTANCE_UID_ROOT) -> ResultUids:
    """UIDs of a result object under ``root``: the same content always yields the same instance, new
    content a new SOP Instance UID (in the same series)."""
    return ResultUids(
        series_uid=derived_uid(root, "mdd-pacs-results", event.hospital_id, event.study_uid, kind, "series"),
        sop_uid=derived_uid(root, "mdd-pacs-results", content_fingerprint(event), kind, "sop"),
    )


def destination_for(settings: Settings, hospital_id: str) -> DicomDestination | None:
    """The results PACS of a hospital: its own entry in ``results_pacs``, else the default, else none."""
    if hospital_id in settings.results_pacs:
        return settings.results_pacs[hospital_id]
    if settings.results_pacs_host:
        return DicomDestination(
            host=settings.results_pacs_host, port=settings.results_pacs_port, ae_title=settings.results_pacs_ae_title,
            tls=settings.results_pacs_tls,
        )
    return None


def _is_our_result(header: Dataset) -> bool:
    return str(header.get("Manufacturer", "")) == RESULTS_MANUFACTURER and str(header.get("SOPClassUID", "")) in OUR_SOP_CLASSES


def load_sources(store: ObjectStore, bucket: str, event: StudyInferred, with_views: bool) -> StudySources:
    """Headers of every stored image of the study and, when asked, one display tile per view.

    Instances are read one at a time; pixels are decoded only for the first image of each view.
    """
    sources = StudySources()
    for key in store.list_keys(bucket, study_prefix(event.hospital_id, event.study_uid)):
        raw: bytes = store.get_bytes(bucket, key)
        try:
            header = dcmread(io.BytesIO(raw), stop_before_pixels=True)
        except InvalidDicomError as exc:
            log.warning("Objeto no DICOM ignorado / non-DICOM object skipped: %s (%s)", key, exc)
            continue
        if "Rows" not in header or _is_our_result(header) or str(header.get("StudyInstanceUID", "")) != event.study_uid:
            continue
        sources.headers.append(header)
        slot = slot_from_dataset(header)
        if with_views and slot is not None and slot not in sources.views:
            try:
                tile = view_tile(header, raw, slot)
            except Exception as exc:  # an undecodable image only costs its tile; the SRs still go out
                log.warning("Vista sin miniatura / view left out of the mosaic: %s (%r)", key, exc)
                continue
            sources.views[slot], sources.tiles[slot] = tile.image, tile
            sources.tile_sources[slot] = str(header.SOPInstanceUID)
    if not sources.headers:
        raise SourceImagesMissing(
            f"No hay imágenes del estudio {event.study_uid} en el almacén / no stored images for study {event.study_uid}"
        )
    return sources


@dataclass(frozen=True)
class Equipment:
    """General Equipment of the results objects: who made them, with which model and versions."""

    model_name: str
    software_versions: list[str]

    @classmethod
    def of(cls, event: StudyInferred) -> "Equipment":
        return cls(
            model_name=f"{RESULTS_MANUFACTURER} {event.model_name}"[:64],
            software_versions=[f"mdd {__version__}", f"{event.model_name} {event.model_version}"[:64]],
        )


def _breast_group(event: StudyInferred, breast: BreastResult, headers: list[Dataset], algorithm: hd.sr.AlgorithmIdentification, root: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    laterality = codes.SCT.Right if breast.laterality == "R" else codes.SCT.Left
    images = [h for h in headers if (slot := slot_from_dataset(h)) is not None and slot[0] == breast.laterality]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(root, "mdd-pacs-results", event.hospital_id, event.study_uid, event.model_version, breast.laterality),
            identifier=BREAST_NAMES[breast.laterality],
        ),
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Breast, laterality=laterality)],
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(
                name=codes.DCM.ProbabilityOfCancer,
                value=breast.malignancy_score,
                unit=codes.UCUM.NoUnits,
                algorithm_id=algorithm,
            )
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(codes.DCM.AssessmentCategory, BIRADS_CODES[breast.birads]),
            hd.sr.QualitativeEvaluation(BREAST_COMPOSITION, DENSITY_CODES[breast.density]),
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(h) for h in images] or None,
    )


def _evaluations(event: StudyInferred) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12: the coded lights and standing of the model, the reason and disclaimer as text."""
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=contains)
    coded_items = [
        (TRIAGE_LIGHT, LIGHT_CODES[event.triage_light]),
        (STATUS_LIGHT, RESULTS_AVAILABLE),
        *standing_statements(event),
    ]
    texts = [(TRIAGE_REASON, event.triage_reason), (DISCLAIMER, event.disclaimer), (DISCLAIMER, NOT_VALIDATED)]
    container.ContentSequence = hd.sr.ContentSequence(
        [hd.sr.CodeContentItem(name=name, value=value, relationship_type=contains) for name, value in coded_items]
        + [hd.sr.TextContentItem(name=name, value=value, relationship_type=contains) for name, value in texts if value]
    )
    return container


def build_sr(event: StudyInferred, headers: list[Dataset], root: str = DEFAULT_INSTANCE_UID_ROOT) -> hd.sr.ComprehensiveSR:
    """The TID 1500 SR of the study's AI results, in the study of ``headers``, referencing them."""
    uids = result_uids(event, "sr", root)
    equipment = Equipment.of(event)
    algorithm = hd.sr.AlgorithmIdentification(name=event.model_name, version=event.model_version)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid(root, "mdd-device", event.model_name, event.model_version),
            name=event.model_name,
            manufacturer_name=RESULTS_MANUFACTURER,
            model_name=f"{event.model_name} {event.model_version}"[:64],
        ),
    )
    groups = [_breast_group(event, breast, headers, algorithm, root) for breast in event.breasts]
    if not groups:  # no breast could be assessed: the report still carries the light and the reason
        groups = [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=derived_uid(root, "mdd-pacs-results", event.hospital_id, event.study_uid, event.model_version, "study"),
                    identifier="Estudio / study",
                ),
                finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.BothBreasts)],
                algorithm_id=algorithm,
            )
        ]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.Mammography,
        imaging_measurements=groups,
        language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(
            hd.sr.CodedConcept("es-MX", "RFC5646", "Spanish (Mexico)")
        ),
    )
    report[0].ContentSequence.append(_evaluations(event))
    return hd.sr.ComprehensiveSR(
        evidence=headers,
        content=report[0],
        series_instance_uid=uids.series_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sop_uid,
        instance_number=1,
        manufacturer=RESULTS_MANUFACTURER,
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_versions,
        is_complete=True,
        is_final=False,
        series_description="Resultados de IA (no diagnóstico) / AI results (not diagnostic)",
        institution_name=headers[0].get("InstitutionName") or None,
        specific_character_set="ISO_IR 192",
        coding_schemes=[mdd_coding_scheme()],
    )


def build_cad(event: StudyInferred, headers: list[Dataset], root: str = DEFAULT_INSTANCE_UID_ROOT) -> Dataset:
    """The Mammography CAD SR of the study's AI results (TID 4000)."""
    uids = result_uids(event, "cad", root)
    equipment = Equipment.of(event)
    return build_cad_sr(
        event,
        headers,
        CadOptions(
            series_uid=uids.series_uid,
            sop_uid=uids.sop_uid,
            series_number=CAD_SERIES_NUMBER,
            manufacturer_model_name=equipment.model_name,
            software_versions=equipment.software_versions,
            series_description="CAD de mastografía, IA no diagnóstica / AI mammography CAD",
        ),
    )


def _footer_lines(event: StudyInferred) -> list[str]:
    """One line per breast (right first), then the model and its standing."""
    breasts = [
        f"{BREAST_NAMES[b.laterality]}: puntuación / score {b.malignancy_score:.2f} · BI-RADS {b.birads} · densidad / density {b.density}"
        for b in sorted(event.breasts, key=lambda b: b.laterality != "R")
    ]
    model = f"{event.model_name} {event.model_version} · IA no validada clínicamente / AI not clinically validated"
    return [*(breasts or ["Sin resultados por mama / no per-breast results"]), model]


def _marks(event: StudyInferred, sources: StudySources) -> dict[Slot, list[list[tuple[float, float]]]]:
    """The model's regions on the images the mosaic shows, in tile coordinates."""
    marks: dict[Slot, list[list[tuple[float, float]]]] = {}
    for slot, sop_uid in sources.tile_sources.items():
        outlines = [region.outline for region in event.regions if region.sop_instance_uid == sop_uid]
        if outlines:
            marks[slot] = [sources.tiles[slot].to_tile(outline) for outline in outlines]
    return marks


def build_sc(event: StudyInferred, sources: StudySources, root: str = DEFAULT_INSTANCE_UID_ROOT) -> hd.sc.SCImage:
    """The Secondary Capture mosaic (four views under the triage light, the model's regions drawn) in the same study."""
    uids = result_uids(event, "sc", root)
    equipment = Equipment.of(event)
    mosaic = render_mosaic(sources.views, event.triage_light, model_label(event), _footer_lines(event), _marks(event, sources))
    reference = sources.headers[0]
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=mosaic,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=uids.series_uid,
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=uids.sop_uid,
        instance_number=1,
        manufacturer=RESULTS_MANUFACTURER,
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_versions,
        patient_orientation=("P", "F"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        series_description=f"{LIGHT_LABELS[event.triage_light]} — IA / AI",
        specific_character_set="ISO_IR 192",
    )
    # A mosaic of both breasts has no single orientation (Type 2: present, empty); its image shows both sides.
    image.PatientOrientation = ""
    image.ImageLaterality = "B"
    # The burned-in text names the light, the model and the views, never the patient (PS3.3 C.7.6.1.1.6).
    image.BurnedInAnnotation = "NO"
    image.ConversionType = "WSD"  # made by a workstation (our software) from the stored images
    image.DerivationDescription = "Mosaico de las cuatro vistas con las regiones del modelo / four views with the model's regions"
    image.SourceImageSequence = [_source_reference(header) for header in sources.headers]
    image.ImageComments = f"{model_label(event)}. {event.disclaimer}"[:10240]
    return image


def _source_reference(header: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [SOURCE_FOR_PROCESSING]
    return item


def _part10(dataset: Dataset) -> bytes:
    """The object as a Part 10 file whose File Meta Information names our implementation, not pydicom's."""
    meta = getattr(dataset, "file_meta", None)
    if meta is not None:
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class PacsResults:
    """Builds the CAD SR, the SR and the SC of an inferred study and sends each to the PACS at most once."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._unconfigured: set[str] = set()

    def _record_key(self, sop_uid: str, destination: DicomDestination) -> str:
        return f"{sop_uid}@{describe(destination)}"

    def _pending(self, event: StudyInferred, destination: DicomDestination) -> list[str]:
        with Session(self.ctx.engine) as session:
            return [
                kind
                for kind in KINDS
                if session.get(PacsResultRecord, self._record_key(result_uids(event, kind, self.ctx.settings.uid_root).sop_uid, destination)) is None
            ]

    def _record(self, event: StudyInferred, kind: str, dataset: Dataset, destination: DicomDestination, status: int) -> None:
        key = self._record_key(str(dataset.SOPInstanceUID), destination)
        with Session(self.ctx.engine) as session:
            if session.get(PacsResultRecord, key) is None:
                session.add(
                    PacsResultRecord(
                        result_key=key,
                        study_uid=event.study_uid,
                        kind=kind,
                        sop_instance_uid=str(dataset.SOPInstanceUID),
                        destination=describe(destination),
                        model_version=event.model_version,
                        status=status,
                        sent_at=utc_now(),
                    )
                )
                session.commit()

    def build(self, event: StudyInferred, kinds: list[str]) -> dict[str, Dataset]:
        """The result objects of ``kinds`` for the event, also kept in the results bucket."""
        settings = self.ctx.settings
        sources = load_sources(self.ctx.store, settings.bucket_dicom, event, with_views="sc" in kinds)
        root = settings.uid_root
        built: dict[str, Dataset] = {}
        if "cad" in kinds:
            built["cad"] = build_cad(event, sources.headers, root)
        if "sr" in kinds:
            built["sr"] = build_sr(event, sources.headers, root)
        if "sc" in kinds:
            built["sc"] = build_sc(event, sources, root)
        for kind, dataset in built.items():
            self.ctx.store.put_bytes(settings.bucket_results, result_key(event.hospital_id, event.study_uid, RESULT_KEYS[kind]), _part10(dataset), "application/dicom")
        return built

    def send(self, event: StudyInferred, destination: DicomDestination, built: dict[str, Dataset]) -> None:
        """C-STORE the objects, record each one the PACS stored, raise if any was not stored."""
        kinds = list(built)
        statuses = store_instances(destination, self.ctx.settings.results_calling_ae_title, [built[k] for k in kinds], self.ctx.settings)
        failed: dict[str, int] = {}
        for kind in kinds:
            status = statuses.get(str(built[kind].SOPInstanceUID), 0xFFFF)
            if status in STORED_STATUSES:
                self._record(event, kind, built[kind], destination, status)
            else:
                failed[kind] = status
        if failed:
            message = f"El PACS {describe(destination)} no guardó / did not store: " + ", ".join(
                f"{kind} 0x{status:04X}" for kind, status in failed.items()
            )
            if set(failed.values()) <= UNAVAILABLE_STATUSES:
                raise PacsUnavailable(message)
            raise PacsStoreError(message)

    async def on_inferred(self, event: StudyInferred) -> list[NotificationSent]:
        """Build the results of a study (kept for the board and Query/Retrieve) and send those not yet
        sent to its hospital's results PACS."""
        destination = destination_for(self.ctx.settings, event.hospital_id)
        if destination is None:
            if event.hospital_id not in self._unconfigured:
                self._unconfigured.add(event.hospital_id)
                log.info("Sin PACS de resultados para %s: se guardan, no se envían / no results PACS: kept, not sent", event.hospital_id)
            try:
                await asyncio.to_thread(self.build, event, list(KINDS))
            except SourceImagesMissing as exc:
                log.warning("%s", exc)
            return []
        pending = await asyncio.to_thread(self._pending, event, destination)
        if not pending:
            log.info("Resultados ya enviados / results already sent to %s", describe(destination))
            return []
        built = await asyncio.to_thread(self.build, event, pending)
        settings = self.ctx.settings
        try:  # a PACS that is down is waited for by the bus (the error is raised through); a refusal is retried
            await with_attempts(lambda: asyncio.to_thread(self.send, event, destination, built),
                                settings.notify_send_attempts, settings.notify_backoff_seconds, "notify-pacs")
        except AttemptsSpent as spent:
            return [await self._give_up(event, destination, pending, spent.last, spent.attempts)]
        log.info("Resultados enviados / results sent to %s: %s", describe(destination), ", ".join(pending))
        return [self._outcome(event, destination, "sent", " ".join(f"{kind}={built[kind].SOPInstanceUID}" for kind in pending))]

    def _outcome(self, event: StudyInferred, destination: DicomDestination, status: str, detail: str) -> NotificationSent:
        return follow_up(  # type: ignore[return-value]
            event,
            NotificationSent,
            SERVICE,
            rule="pacs_results",
            channel="dicom",
            recipient=describe(destination),
            status=status,
            detail=detail,
        )

    async def _give_up(
        self, event: StudyInferred, destination: DicomDestination, pending: list[str], exc: Exception, attempts: int
    ) -> NotificationSent:
        """Dead-letter the event and report the failure; re-driving the dead letter sends what is missing."""
        reason = f"{type(exc).__name__}: {exc}"
        await self.ctx.bus.dead_letter(
            DeadLetter(
                stage=GROUP,
                source_topic=topic_for(StudyInferred, self.ctx.settings.topic_prefix),
                error=reason,
                attempts=attempts,
                study_uid=event.study_uid,
                hospital_id=event.hospital_id,
                payload=event.model_dump_json(),
            )
        )
        return self._outcome(event, destination, "failed", f"{', '.join(pending)}: {reason}")


def _configured(settings: Settings) -> bool:
    return bool(settings.results_pacs_host or settings.results_pacs)


def register_pacs_results(ctx: ServiceContext) -> None:
    """Subscribe the results builder and sender in its own consumer group. Without any results PACS the
    results are still built and kept in the results bucket (the board's mosaic, Query/Retrieve)."""
    if not _configured(ctx.settings):
        log.info("Sin MDD_RESULTS_PACS_HOST: los resultados se guardan, no se envían / results kept, not sent")
    init_db(ctx.engine, [PacsResultRecord])
    ctx.bus.subscribe(StudyInferred, PacsResults(ctx).on_inferred, service=SERVICE, group=GROUP)
