"""Accepting instances: store durably, publish ``instance.stored``, assemble studies.

The SCP and any other front door call ``Ingest.accept`` with the encoded DICOM file exactly as
received; it answers a DICOM status. Success means the object is durable in the store and the
broker accepted its event; otherwise the status tells the modality to retry.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from uuid import NAMESPACE_URL, UUID, uuid5

from pydicom import Dataset, dcmread
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.bus import Bus
from shared.dicom_uids import uid_problem
from shared.dicom_vocabulary import DimseStatus
from shared.events import InstanceStored, StudyCompleted, ViewRef, producer, utc_now
from shared.db import upsert
from shared.instance_index import InstanceIndexRow, row_for
from shared.logs import bind_study
from shared.reliability.crashpoints import crash_point
from shared.reliability.errors import Dependency, describe, unavailable_dependency
from shared.reliability.health import HEALTH
from shared.reliability.retry import note_back_for, note_outage
from shared.reliability.lease import LeaderLease
from shared.reliability.outbox import add_events
from shared.reliability.periodic import PeriodicTask
from shared.pseudonyms import patient_key
from shared.settings import Settings
from shared.digests import ContentDigest, digest_bytes, digest_file
from shared.store import GrowingUpload, ObjectStore, UploadsWhileWriting
from shared.object_keys import hospital_problem, instance_key
from services.ingest.assembly import has_standard_views, normalise_view, parse_view_label, quiet_since, view_label
from services.ingest.tables import AssemblingStudy, StoredInstance
from services.ingest.sop_classes import IMAGE_ATTRIBUTES, STORAGE_SOP_CLASSES
from services.ingest.validation import DEFAULT_LIMITS, InputLimits, InstanceTooLarge, image_problem, read_checked

log = logging.getLogger("mdd.ingest")
SERVICE = "ingest"

SUCCESS = DimseStatus.SUCCESS
SOP_CLASS_NOT_SUPPORTED = DimseStatus.SOP_CLASS_NOT_SUPPORTED
OUT_OF_RESOURCES = DimseStatus.OUT_OF_RESOURCES
DATASET_DOES_NOT_MATCH_SOP_CLASS = DimseStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
CANNOT_UNDERSTAND = DimseStatus.CANNOT_UNDERSTAND


@dataclass(frozen=True)
class StoreOutcome:
    """The DICOM status of one C-STORE (or STOW/ZIP item) and why."""

    status: int
    message: str
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


@dataclass(frozen=True)
class InstanceHeader:
    """What ingest needs from an instance's header."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    modality: str
    laterality: str | None
    view_position: str | None
    accession_number: str
    patient_id: str
    #: The parsed header itself (no pixel data), for the DICOMweb and Query/Retrieve index row.
    dataset: Dataset = field(repr=False, compare=False)


#: The identifiers every instance must carry, valid, before it is stored.
UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def read_header(encoded: bytes | Path, limits: InputLimits = DEFAULT_LIMITS) -> InstanceHeader:
    """Parse the header of an encoded DICOM file or spooled file (pixel data is not read).

    Raises ``ValueError`` with a reason when the file cannot be parsed (:class:`InstanceTooLarge` past
    the size ``limits``), ``LookupError`` when it lacks its identifiers or its image cannot be right.
    """
    try:
        dataset, structure = read_checked(encoded, limits)
    except InstanceTooLarge:
        raise
    except Exception as exc:
        raise ValueError(f"DICOM ilegible / unreadable DICOM: {exc}") from exc
    if structure.truncation:
        raise ValueError(f"DICOM truncado / truncated DICOM: {structure.truncation}")
    missing = [
        keyword
        for keyword in UID_KEYWORDS
        if not str(dataset.get(keyword, "")).strip()
    ]
    if missing:
        raise LookupError(f"Faltan identificadores / missing identifiers: {', '.join(missing)}")
    for keyword in UID_KEYWORDS:  # they become table keys and object names
        problem = uid_problem(str(dataset.get(keyword)))
        if problem:
            raise LookupError(f"UID inválido / invalid UID ({keyword}): {problem}")
    meta = getattr(dataset, "file_meta", None)
    sop_class = str(dataset.SOPClassUID)
    if sop_class in STORAGE_SOP_CLASSES:
        absent = [keyword for keyword in IMAGE_ATTRIBUTES if keyword not in dataset]
        if structure.has_pixel_data is False:
            absent.append("PixelData")
        if absent:
            raise LookupError(f"Imagen sin / image without: {', '.join(absent)}")
        problem = image_problem(dataset, structure, limits)
        if problem:
            raise LookupError(problem)
    return InstanceHeader(
        sop_class_uid=str(dataset.SOPClassUID),
        sop_instance_uid=str(dataset.SOPInstanceUID),
        study_uid=str(dataset.StudyInstanceUID),
        series_uid=str(dataset.SeriesInstanceUID),
        transfer_syntax_uid=str(getattr(meta, "TransferSyntaxUID", "")),
        modality=str(dataset.get("Modality", "")),
        laterality=(str(dataset.get("ImageLaterality", "") or dataset.get("Laterality", "")) or None),
        view_position=str(dataset.get("ViewPosition", "")) or None,
        accession_number=str(dataset.get("AccessionNumber", "")),
        patient_id=str(dataset.get("PatientID", "")),
        dataset=dataset,
    )


def _envelope(study: AssemblingStudy) -> dict[str, object]:
    """The envelope fields every event of an assembling study shares."""
    return {
        "study_uid": study.study_uid,
        "hospital_id": study.hospital_id,
        "correlation_id": study.correlation_id,
        "accession_number": study.accession_number,
        "producer": producer(SERVICE),
    }


def instance_event_id(hospital_id: str, sop_instance_uid: str, sha256: str) -> UUID:
    """The one id of the ``instance.stored`` of an instance's content: a resend or a redelivery is the same event."""
    return uuid5(NAMESPACE_URL, f"mdd-ingest:stored:{hospital_id}:{sop_instance_uid}:{sha256}")


def completed_event_id(hospital_id: str, study_uid: str) -> UUID:
    """The one id of a study's ``study.completed``."""
    return uuid5(NAMESPACE_URL, f"mdd-ingest:completed:{hospital_id}:{study_uid}")


QUIET_SCAN_LEASE = "ingest.quiet-scan"


class Ingest:
    """Stores instances, publishes their events and completes studies.

    Each instance is written to the store first (its key is fixed by its identifiers, so writing it
    again is harmless), then recorded with its ``instance.stored`` event — and the study's
    ``study.completed`` when it is the last standard view — in one database transaction that holds
    the study's row lock (several associations and several ingest replicas assemble a study without
    stepping on each other). The events leave through the outbox: the C-STORE is answered Success
    once the broker has accepted them; if it does not in time, the modality is told to retry, and
    the relay publishes what was recorded anyway.
    """

    def __init__(self, settings: Settings, store: ObjectStore, bus: Bus, engine: Engine) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.engine = engine
        self.outbox = bus.outbox
        self.limits = InputLimits.from_settings(settings)
        self.quiet_scan = PeriodicTask(
            QUIET_SCAN_LEASE,
            lambda: asyncio.to_thread(self.complete_quiet_studies),
            quiet_scan_interval(settings.study_quiet_seconds),
            lease=LeaderLease(engine, QUIET_SCAN_LEASE, ttl_seconds=max(10.0, 3 * quiet_scan_interval(settings.study_quiet_seconds))),
        )

    def accept(
        self,
        encoded: bytes | Path,
        calling_ae: str = "",
        expected_sop_class: str | None = None,
        hospital_id: str | None = None,
        digest: ContentDigest | None = None,
        upload: GrowingUpload | None = None,
    ) -> StoreOutcome:
        """Store one instance (bytes, or a spooled file streamed to the store) and publish it.

        ``digest`` is the instance's digest when the front door took it while receiving, ``upload``
        its upload started while it arrived (completed here if the instance is accepted, else
        discarded). Called from a non-async thread (the SCP's, or a web request's worker thread).
        """
        try:
            return self._accept(encoded, calling_ae, expected_sop_class, hospital_id, digest, upload)
        finally:
            if upload is not None:
                upload.abort()  # a no-op once completed

    def start_upload(self, partial: Path, calling_ae: str) -> GrowingUpload | None:
        """Start uploading a C-STORE instance still being received, under the key it will have.

        ``None`` when the store cannot upload while writing or refuses to start (the instance is then
        uploaded whole once received, and a store outage answered as usual); raises while the
        header has not fully arrived yet.
        """
        if not isinstance(self.store, UploadsWhileWriting):
            return None
        dataset = dcmread(partial, stop_before_pixels=True)
        hospital_id = self.settings.hospital_for_calling_ae(calling_ae)
        key = instance_key(hospital_id, str(dataset.StudyInstanceUID), str(dataset.SeriesInstanceUID), str(dataset.SOPInstanceUID))
        try:
            return self.store.begin_upload(self.settings.bucket_dicom, key, partial, "application/dicom")
        except Exception as exc:
            log.warning("Carga anticipada no disponible / early upload unavailable: %r", exc)
            return None

    def _accept(
        self,
        encoded: bytes | Path,
        calling_ae: str,
        expected_sop_class: str | None,
        hospital_id: str | None,
        digest: ContentDigest | None,
        upload: GrowingUpload | None,
    ) -> StoreOutcome:
        try:
            header = read_header(encoded, self.limits)
        except InstanceTooLarge as exc:
            return StoreOutcome(OUT_OF_RESOURCES, str(exc))
        except LookupError as exc:
            return StoreOutcome(DATASET_DOES_NOT_MATCH_SOP_CLASS, str(exc))
        except ValueError as exc:
            return StoreOutcome(CANNOT_UNDERSTAND, str(exc))
        if header.sop_class_uid not in STORAGE_SOP_CLASSES:
            return StoreOutcome(
                SOP_CLASS_NOT_SUPPORTED, f"SOP Class no soportada / not supported: {header.sop_class_uid}"
            )
        if expected_sop_class and header.sop_class_uid != expected_sop_class:
            return StoreOutcome(
                DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"SOP Class {header.sop_class_uid} no coincide con {expected_sop_class} / does not match",
            )
        try:
            outcome = self._store_and_publish(encoded, header, calling_ae, hospital_id, digest, upload)
        except Exception as exc:  # the SCP must answer a status and keep serving, whatever happens
            dependency = unavailable_dependency(exc)
            if dependency is not None:
                note_outage(HEALTH, dependency, SERVICE, exc)  # /healthz names it until a store succeeds again
                log.error("Dependencia no disponible / dependency unavailable (%s): %s", dependency.value, describe(exc))
                return StoreOutcome(OUT_OF_RESOURCES, f"{UNAVAILABLE_WORDS[dependency]}: {type(exc).__name__}")
            log.exception("Error interno al almacenar / internal error while storing")
            return StoreOutcome(OUT_OF_RESOURCES, f"Error interno / internal error: {type(exc).__name__}")
        note_back_for(SERVICE)
        return outcome

    def _store_and_publish(
        self,
        encoded: bytes | Path,
        header: InstanceHeader,
        calling_ae: str,
        hospital_id: str | None,
        content: ContentDigest | None,
        upload: GrowingUpload | None,
    ) -> StoreOutcome:
        hospital_id = hospital_id or self.settings.hospital_for_calling_ae(calling_ae)
        if problem := hospital_problem(hospital_id):
            return StoreOutcome(DATASET_DOES_NOT_MATCH_SOP_CLASS, problem)  # its folder could sit inside another's
        if content is None:
            content = digest_file(encoded) if isinstance(encoded, Path) else digest_bytes(encoded)
        digest, size = content.sha256, content.size
        key = instance_key(hospital_id, header.study_uid, header.series_uid, header.sop_instance_uid)
        with Session(self.engine) as session:
            known = session.get(StoredInstance, (hospital_id, header.sop_instance_uid))
        if known is not None and known.sha256 == digest:
            # Stored before; its event may still be waiting for the broker (a retry after 0xA700).
            self.outbox.flush_from_thread([str(instance_event_id(hospital_id, header.sop_instance_uid, digest))],
                                          self.settings.publish_timeout_seconds)
            return StoreOutcome(SUCCESS, "Instancia ya almacenada / already stored", duplicate=True)
        if upload is not None and upload.key == key and isinstance(encoded, Path):
            upload.complete(size)
        elif isinstance(encoded, Path):
            self.store.put_file(self.settings.bucket_dicom, key, encoded, "application/dicom", content)
        else:
            self.store.put_bytes(self.settings.bucket_dicom, key, encoded, "application/dicom")
        crash_point("ingest.stored")
        event_ids, correlation_id = self._record(header, hospital_id, key, content, calling_ae)
        crash_point("ingest.recorded")
        with bind_study(header.study_uid, correlation_id):
            self.outbox.flush_from_thread(event_ids, self.settings.publish_timeout_seconds)
            log.info("Instancia almacenada / instance stored: %s", key)
        return StoreOutcome(SUCCESS, "Almacenada / stored")

    def _lock_study(self, session: Session, header: InstanceHeader, hospital_id: str) -> AssemblingStudy:
        """The study's row, created if new, locked until the transaction ends (the first statement writes,
        so on SQLite the transaction holds the database's write lock from its start)."""
        now = utc_now()
        values = {
            "study_uid": header.study_uid, "hospital_id": hospital_id, "correlation_id": str(uuid.uuid4()),
            "accession_number": header.accession_number, "patient_key": patient_key(self.settings, hospital_id, header.patient_id),
            "first_instance_at": now, "last_instance_at": now, "views_seen": [],
        }
        statement = upsert(session, AssemblingStudy).values(**values)
        # A conflicting INSERT that updates locks the row (PostgreSQL) as SELECT ... FOR UPDATE would.
        statement = statement.on_conflict_do_update(index_elements=["hospital_id", "study_uid"],
                                                    set_={"study_uid": statement.excluded.study_uid})
        return session.scalars(statement.returning(AssemblingStudy), execution_options={"populate_existing": True}).one()

    def _record(
        self, header: InstanceHeader, hospital_id: str, key: str, content: ContentDigest, calling_ae: str
    ) -> tuple[list[str], str]:
        """Record the stored instance, its event and — when it completes the views — the study's, in one
        transaction; the outbox ids to flush, and the study's correlation id."""
        with Session(self.engine, expire_on_commit=False) as session:
            study = self._lock_study(session, header, hospital_id)
            known = session.get(StoredInstance, (hospital_id, header.sop_instance_uid))
            with bind_study(study.study_uid, study.correlation_id):
                return self._record_locked(session, study, header, key, content, calling_ae, known), study.correlation_id

    def _record_locked(
        self, session: Session, study: AssemblingStudy, header: InstanceHeader, key: str, content: ContentDigest, calling_ae: str,
        known: StoredInstance | None,
    ) -> list[str]:
        """``_record`` with the study's row held; ``known``: the instance's row as read under that lock."""
        hospital_id = study.hospital_id
        event = InstanceStored(
            **_envelope(study),
            event_id=instance_event_id(hospital_id, header.sop_instance_uid, content.sha256),
            sop_instance_uid=header.sop_instance_uid,
            series_instance_uid=header.series_uid,
            sop_class_uid=header.sop_class_uid,
            transfer_syntax_uid=header.transfer_syntax_uid,
            modality=header.modality,
            laterality=header.laterality,
            view_position=header.view_position,
            object_key=key,
            size_bytes=content.size,
            sha256=content.sha256,
            patient_key=study.patient_key,
            calling_ae=calling_ae,
        )
        event_ids = add_events(session, [event])
        if known is not None and known.sha256 == content.sha256:  # the same instance, recorded meanwhile
            session.commit()
            return event_ids
        now = utc_now()
        study.last_instance_at = now
        study.views_seen = sorted({*study.views_seen, view_label(header.laterality, header.view_position)})
        session.add(study)
        (session.add if known is None else session.merge)(
            StoredInstance(
                hospital_id=hospital_id,
                sop_instance_uid=header.sop_instance_uid,
                study_uid=header.study_uid,
                series_instance_uid=header.series_uid,
                object_key=key,
                sha256=content.sha256,
                size_bytes=content.size,
                laterality=header.laterality,
                view_position=header.view_position,
                stored_at=now,
            )
        )
        # Indexed in the same transaction: Query/Retrieve and QIDO find the instance once it is acknowledged.
        index_row = row_for(event, header.dataset).model_dump()
        session.execute(upsert(session, InstanceIndexRow).values(**index_row).on_conflict_do_update(
            index_elements=["hospital_id", "sop_instance_uid"],
            set_={k: v for k, v in index_row.items() if k not in ("hospital_id", "sop_instance_uid")}))
        if study.completed_at is None and has_standard_views(parse_view_label(v) for v in study.views_seen):
            event_ids += self._complete(session, study, "all_views")
        session.commit()
        return event_ids

    def _complete(self, session: Session, study: AssemblingStudy, reason: str) -> list[str]:
        """Mark the study completed and write its ``study.completed`` to the outbox (the caller commits)."""
        session.flush()
        instances = session.exec(
            select(StoredInstance)
            .where(StoredInstance.hospital_id == study.hospital_id, StoredInstance.study_uid == study.study_uid)
            .order_by(col(StoredInstance.stored_at))
        ).all()
        event = StudyCompleted(
            **_envelope(study),
            event_id=completed_event_id(study.hospital_id, study.study_uid),
            patient_key=study.patient_key,
            reason=reason,  # type: ignore[arg-type]
            views=[
                ViewRef(
                    sop_instance_uid=row.sop_instance_uid,
                    series_instance_uid=row.series_instance_uid,
                    object_key=row.object_key,
                    laterality=row.laterality,
                    view_position=normalise_view(row.view_position) or row.view_position,
                )
                for row in instances
            ],
        )
        study.completed_at = utc_now()
        study.completion_reason = reason
        session.add(study)
        log.info("Estudio completo / study completed (%s, %d instancias): %s", reason, len(instances), study.study_uid)
        return add_events(session, [event])

    def complete_quiet_studies(self) -> int:
        """Complete every study that has been quiet for the configured time; returns how many.

        Each study is completed in its own transaction under its row lock (an instance arriving at the
        same moment either makes it before the completion or finds the study completed).
        """
        cutoff = utc_now() - timedelta(seconds=self.settings.study_quiet_seconds)
        with Session(self.engine) as session:
            candidates = session.exec(
                select(AssemblingStudy.hospital_id, AssemblingStudy.study_uid).where(
                    col(AssemblingStudy.completed_at).is_(None), col(AssemblingStudy.last_instance_at) <= cutoff
                )
            ).all()
        completed = 0
        for hospital_id, study_uid in candidates:
            with Session(self.engine, expire_on_commit=False) as session:
                study = session.exec(
                    select(AssemblingStudy)
                    .where(AssemblingStudy.hospital_id == hospital_id, AssemblingStudy.study_uid == study_uid)
                    .with_for_update()
                ).one_or_none()
                if study is None or study.completed_at is not None or not quiet_since(
                    study.last_instance_at, utc_now(), self.settings.study_quiet_seconds
                ):
                    continue
                with bind_study(study.study_uid, study.correlation_id):
                    event_ids = self._complete(session, study, "quiet_period")
                    session.commit()
            completed += 1
            crash_point("ingest.completed")
            with bind_study(study.study_uid, study.correlation_id):
                try:
                    self.outbox.flush_from_thread(event_ids, self.settings.publish_timeout_seconds)
                except Exception as exc:  # recorded: the outbox relay publishes it once the broker is back
                    log.warning("study.completed pendiente en la bandeja de salida / left in the outbox: %r", exc)
        return completed


def quiet_scan_interval(quiet_seconds: float) -> float:
    """How often the leader looks for quiet studies: a quarter of the quiet period, between 0.2 and 5 s."""
    return min(5.0, max(0.2, quiet_seconds / 4))


UNAVAILABLE_WORDS = {
    Dependency.STORE: "Almacén no disponible / store unavailable",
    Dependency.DATABASE: "Base de datos no disponible / database unavailable",
    Dependency.BROKER: "Broker no disponible / broker unavailable",
    Dependency.NETWORK: "Red no disponible / network unavailable",
}
UNAVAILABLE_WORDS.update({d: f"{d.value} no disponible / unavailable" for d in Dependency if d not in UNAVAILABLE_WORDS})
