"""AI results back to the hospital's PACS: a DICOM SR and a Secondary Capture mosaic per study.

For each ``study.inferred`` event whose hospital has a results PACS (``MDD_RESULTS_PACS_HOST`` or
``MDD_RESULTS_PACS``), the original instances are read from the object store and two objects
are built in the same study:

- an SR (Comprehensive SR, TID 1500 Measurement Report): one measurement group (TID 1501) per
  breast with the malignancy score, BI-RADS category and ACR density, the model as algorithm
  (TID 4019), the source images, and a "Qualitative Evaluations" container with both lights, the
  training data and the disclaimer;
- a Secondary Capture image: the four views as a 2x2 mosaic under the triage light
  (:mod:`services.notify.mosaic`).

Both are sent by C-STORE. Their UIDs derive from (study, model, version, kind), so a redelivered
event rebuilds the same instances; each sent instance is recorded per destination and never sent
twice. A PACS that fails is retried with exponential backoff (``MDD_NOTIFY_SEND_ATTEMPTS``,
``MDD_NOTIFY_BACKOFF_SECONDS``); after the last attempt a failed ``notification.sent`` is published
and the event goes to the dead-letter topic. The study itself does not fail: its results exist.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import highdicom as hd
import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage, generate_uid
from sqlmodel import Field, Session, SQLModel

from shared.db import init_db
from shared.events import BreastResult, DeadLetter, NotificationSent, StudyInferred, follow_up, utc_now
from shared.runtime import ServiceContext
from shared.settings import DicomDestination, Settings
from shared.store import ObjectStore
from shared.topics import topic_for
from shared.dicom_vocabulary import STORED_STATUSES
from services.notify.adapters.pacs_store import PacsStoreError, describe, store_instances
from services.notify.mosaic import LIGHT_LABELS, Slot, display_view, render_mosaic, view_slot

log = logging.getLogger("mdd.notify.pacs")
SERVICE = "notify"
GROUP = "notify-pacs"
KINDS: Final[tuple[str, ...]] = ("sr", "sc")
RESULTS_MANUFACTURER: Final[str] = "Mexican Deep DICOM"
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
RESULT_KEYS: Final[dict[str, str]] = {"sr": "sr.dcm", "sc": "overlay.dcm"}

NOT_VALIDATED: Final[str] = (
    "Resultado de IA no validado clínicamente; no sustituye la interpretación del radiólogo. / "
    "AI result, not clinically validated; no substitute for the radiologist's reading."
)
SYNTHETIC_LABEL: Final[str] = "Modelo de demostración con datos sintéticos / synthetic-data demonstration model"
UNTRAINED_LABEL: Final[str] = "Modelo SIN ENTRENAR: solo demostración / UNTRAINED model: demonstration only"
UNVALIDATED_LABEL: Final[str] = "Modelo de IA no validado clínicamente / AI model, not clinically validated"
STATUS_LIGHT_TEXT: Final[str] = "VERDE / GREEN: resultados de IA disponibles / AI results available"

# Local codes (private coding scheme "99MDD", declared in each SR) for what no standard code names.
MDD_SCHEME: Final[str] = "99MDD"
TRIAGE_LIGHT = hd.sr.CodedConcept("TRIAGE_LIGHT", MDD_SCHEME, "Semáforo de triaje / triage light")
TRIAGE_REASON = hd.sr.CodedConcept("TRIAGE_REASON", MDD_SCHEME, "Motivo del semáforo / triage reason")
STATUS_LIGHT = hd.sr.CodedConcept("STATUS_LIGHT", MDD_SCHEME, "Semáforo de estado / status light")
TRAINED_ON = hd.sr.CodedConcept("TRAINED_ON", MDD_SCHEME, "Datos de entrenamiento / training data")
DISCLAIMER = hd.sr.CodedConcept("DISCLAIMER", MDD_SCHEME, "Aviso / disclaimer")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
BREAST_COMPOSITION = hd.sr.CodedConcept("129715009", "SCT", "Breast composition")

#: BI-RADS category -> CID 6026 Mammography Assessment.
BIRADS_CODES: Final[dict[int, hd.sr.CodedConcept]] = {
    0: hd.sr.CodedConcept("397138000", "SCT", "BI-RADS 0 - Need additional imaging evaluation"),
    1: hd.sr.CodedConcept("397140005", "SCT", "BI-RADS 1 - Negative"),
    2: hd.sr.CodedConcept("397141009", "SCT", "BI-RADS 2 - Benign finding"),
    3: hd.sr.CodedConcept("397143007", "SCT", "BI-RADS 3 - Probably benign finding"),
    4: hd.sr.CodedConcept("397144001", "SCT", "BI-RADS 4 - Suspicious abnormality"),
    5: hd.sr.CodedConcept("397145000", "SCT", "BI-RADS 5 - Highly suggestive of malignancy"),
    6: hd.sr.CodedConcept("111125", "DCM", "BI-RADS 6 - Known biopsy proven malignancy"),
}
#: ACR density -> CID 6000 Overall Breast Composition.
DENSITY_CODES: Final[dict[str, hd.sr.CodedConcept]] = {
    "A": hd.sr.CodedConcept("129716005", "SCT", "Almost entirely fat"),
    "B": hd.sr.CodedConcept("129717001", "SCT", "Scattered fibroglandular densities"),
    "C": hd.sr.CodedConcept("129718006", "SCT", "Heterogeneously dense"),
    "D": hd.sr.CodedConcept("129719003", "SCT", "Extremely dense"),
}
_BREAST_NAMES: Final[dict[str, str]] = {"R": "Mama derecha / right breast", "L": "Mama izquierda / left breast"}
_LIGHT_WORDS: Final[dict[str, str]] = {"RED": "ROJO / RED", "YELLOW": "AMARILLO / YELLOW", "GREEN": "VERDE / GREEN"}


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


def result_uids(event: StudyInferred, kind: str) -> ResultUids:
    """Deterministic UIDs of a result object: the same event always yields the same instance."""
    key = ["mdd-pacs-results", event.study_uid, event.model_name, event.model_version, kind]
    return ResultUids(series_uid=generate_uid(entropy_srcs=[*key, "series"]), sop_uid=generate_uid(entropy_srcs=[*key, "sop"]))


def destination_for(settings: Settings, hospital_id: str) -> DicomDestination | None:
    """The results PACS of a hospital: its own entry in ``results_pacs``, else the default, else none."""
    if hospital_id in settings.results_pacs:
        return settings.results_pacs[hospital_id]
    if settings.results_pacs_host:
        return DicomDestination(host=settings.results_pacs_host, port=settings.results_pacs_port, ae_title=settings.results_pacs_ae_title)
    return None


def model_label(event: StudyInferred) -> str:
    """The line that says what kind of model produced the result (shown on the mosaic)."""
    if not event.model_trained:
        return UNTRAINED_LABEL
    trained_on = event.model_trained_on.lower()
    if "sintétic" in trained_on or "synthetic" in trained_on:
        return SYNTHETIC_LABEL
    return UNVALIDATED_LABEL


def _is_our_result(header: Dataset) -> bool:
    return str(header.get("Manufacturer", "")) == RESULTS_MANUFACTURER and str(header.get("SOPClassUID", "")) in (
        ComprehensiveSRStorage,
        SecondaryCaptureImageStorage,
    )


def load_sources(store: ObjectStore, bucket: str, event: StudyInferred, with_views: bool) -> StudySources:
    """Headers of every stored image of the study and, when asked, one display tile per view.

    Instances are read one at a time; pixels are decoded only for the first image of each view.
    """
    sources = StudySources()
    for key in store.list_keys(bucket, f"{event.hospital_id}/{event.study_uid}/"):
        raw: bytes = store.get_bytes(bucket, key)
        try:
            header = dcmread(io.BytesIO(raw), stop_before_pixels=True)
        except InvalidDicomError as exc:
            log.warning("Objeto no DICOM ignorado / non-DICOM object skipped: %s (%s)", key, exc)
            continue
        if "Rows" not in header or _is_our_result(header) or str(header.get("StudyInstanceUID", "")) != event.study_uid:
            continue
        sources.headers.append(header)
        slot = view_slot(header)
        if with_views and slot is not None and slot not in sources.views:
            try:
                sources.views[slot] = display_view(header, raw, slot)
            except Exception as exc:  # an undecodable image only costs its tile; the SR still goes out
                log.warning("Vista sin miniatura / view left out of the mosaic: %s (%r)", key, exc)
    if not sources.headers:
        raise SourceImagesMissing(
            f"No hay imágenes del estudio {event.study_uid} en el almacén / no stored images for study {event.study_uid}"
        )
    return sources


def _breast_group(event: StudyInferred, breast: BreastResult, headers: list[Dataset], algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    laterality = codes.SCT.Right if breast.laterality == "R" else codes.SCT.Left
    images = [h for h in headers if (slot := view_slot(h)) is not None and slot[0] == breast.laterality]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=["mdd-pacs-results", event.study_uid, event.model_version, breast.laterality]),
            identifier=_BREAST_NAMES[breast.laterality],
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
    """TID 1500 row 12: the lights, the training data and the disclaimer, as text."""
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    texts = [
        (TRIAGE_LIGHT, f"SEMÁFORO {_LIGHT_WORDS[event.triage_light]}"),
        (TRIAGE_REASON, event.triage_reason),
        (STATUS_LIGHT, STATUS_LIGHT_TEXT),
        (TRAINED_ON, event.model_trained_on),
        (DISCLAIMER, event.disclaimer),
        (DISCLAIMER, NOT_VALIDATED),
    ]
    container.ContentSequence = hd.sr.ContentSequence(
        [hd.sr.TextContentItem(name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS) for name, value in texts if value]
    )
    return container


def build_sr(event: StudyInferred, headers: list[Dataset]) -> hd.sr.ComprehensiveSR:
    """The SR of the study's AI results (TID 1500), in the study of ``headers``, referencing them."""
    uids = result_uids(event, "sr")
    algorithm = hd.sr.AlgorithmIdentification(name=event.model_name, version=event.model_version)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["mdd-device", event.model_name, event.model_version]),
            name=event.model_name,
            manufacturer_name=RESULTS_MANUFACTURER,
            model_name=f"{event.model_name} {event.model_version}"[:64],
        ),
    )
    groups = [_breast_group(event, breast, headers, algorithm) for breast in event.breasts]
    if not groups:  # no breast could be assessed: the report still carries the light and the reason
        groups = [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=generate_uid(entropy_srcs=["mdd-pacs-results", event.study_uid, event.model_version, "study"]),
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
        is_complete=True,
        is_final=False,
        series_description="Resultados de IA (no diagnóstico) / AI results (not diagnostic)",
        institution_name=headers[0].get("InstitutionName") or None,
        specific_character_set="ISO_IR 192",
        coding_schemes=[
            CodingSchemeIdentificationItem(
                designator=MDD_SCHEME, name="Mexican Deep DICOM", responsible_organization=RESULTS_MANUFACTURER
            )
        ],
    )


def _footer_lines(event: StudyInferred) -> list[str]:
    """One line per breast (right first), then the model and its standing."""
    breasts = [
        f"{_BREAST_NAMES[b.laterality]}: puntuación / score {b.malignancy_score:.2f} · BI-RADS {b.birads} · densidad / density {b.density}"
        for b in sorted(event.breasts, key=lambda b: b.laterality != "R")
    ]
    model = f"{event.model_name} {event.model_version} · IA no validada clínicamente / AI not clinically validated"
    return [*(breasts or ["Sin resultados por mama / no per-breast results"]), model]


def build_sc(event: StudyInferred, sources: StudySources) -> hd.sc.SCImage:
    """The Secondary Capture mosaic (four views under the triage light) in the same study."""
    uids = result_uids(event, "sc")
    mosaic = render_mosaic(sources.views, event.triage_light, model_label(event), _footer_lines(event))
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
        patient_orientation=("P", "F"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        series_description=f"{LIGHT_LABELS[event.triage_light]} — IA / AI",
        specific_character_set="ISO_IR 192",
    )
    # A mosaic of both breasts has no single orientation (Patient Orientation is type 2: empty).
    image.PatientOrientation = ""
    image.BurnedInAnnotation = "YES"
    image.ImageComments = f"{model_label(event)}. {event.disclaimer}"[:10240]
    return image


def _part10(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class PacsResults:
    """Builds the SR and the SC of an inferred study and sends each to the PACS at most once."""

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
                if session.get(PacsResultRecord, self._record_key(result_uids(event, kind).sop_uid, destination)) is None
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
        built: dict[str, Dataset] = {}
        if "sr" in kinds:
            built["sr"] = build_sr(event, sources.headers)
        if "sc" in kinds:
            built["sc"] = build_sc(event, sources)
        for kind, dataset in built.items():
            self.ctx.store.put_bytes(settings.bucket_results, f"{event.study_uid}/{RESULT_KEYS[kind]}", _part10(dataset), "application/dicom")
        return built

    def send(self, event: StudyInferred, destination: DicomDestination, built: dict[str, Dataset]) -> None:
        """C-STORE the objects, record each one the PACS stored, raise if any was not stored."""
        kinds = list(built)
        statuses = store_instances(destination, self.ctx.settings.results_calling_ae_title, [built[k] for k in kinds])
        failed: list[str] = []
        for kind in kinds:
            status = statuses.get(str(built[kind].SOPInstanceUID), 0xFFFF)
            if status in STORED_STATUSES:
                self._record(event, kind, built[kind], destination, status)
            else:
                failed.append(f"{kind} 0x{status:04X}")
        if failed:
            raise PacsStoreError(f"El PACS {describe(destination)} no guardó / did not store: {', '.join(failed)}")

    async def on_inferred(self, event: StudyInferred) -> list[NotificationSent]:
        """Send the SR and the SC of a study not yet sent to its hospital's results PACS."""
        destination = destination_for(self.ctx.settings, event.hospital_id)
        if destination is None:
            if event.hospital_id not in self._unconfigured:
                self._unconfigured.add(event.hospital_id)
                log.info("Sin PACS de resultados para %s: no se envían / no results PACS, not sent", event.hospital_id)
            return []
        pending = await asyncio.to_thread(self._pending, event, destination)
        if not pending:
            log.info("Resultados ya enviados / results already sent to %s", describe(destination))
            return []
        built = await asyncio.to_thread(self.build, event, pending)
        settings = self.ctx.settings
        for attempt in range(1, settings.notify_send_attempts + 1):
            try:
                await asyncio.to_thread(self.send, event, destination, built)
                break
            except Exception as exc:
                log.warning("Envío al PACS fallido %d/%d: %r", attempt, settings.notify_send_attempts, exc)
                if attempt == settings.notify_send_attempts:
                    return [await self._give_up(event, destination, pending, exc, attempt)]
                await asyncio.sleep(settings.notify_backoff_seconds * 2 ** (attempt - 1))
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
                payload=event.model_dump_json(),
            )
        )
        return self._outcome(event, destination, "failed", f"{', '.join(pending)}: {reason}")


def _configured(settings: Settings) -> bool:
    return bool(settings.results_pacs_host or settings.results_pacs)


def register_pacs_results(ctx: ServiceContext) -> None:
    """Subscribe the results sender in its own consumer group; without any results PACS, log once and stay off."""
    if not _configured(ctx.settings):
        log.info("Envío de resultados al PACS desactivado (sin MDD_RESULTS_PACS_HOST) / results to PACS off")
        return
    init_db(ctx.engine, [PacsResultRecord])
    ctx.bus.subscribe(StudyInferred, PacsResults(ctx).on_inferred, service=SERVICE, group=GROUP)
