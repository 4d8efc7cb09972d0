"""Storage Commitment (push model, PS3.4 Annex J): which requested instances we hold durably, and why not the others.

An instance is committed when ingest recorded it as stored (its ``instance.stored`` was accepted),
its object is in the store with the size and SHA-256 recorded at reception, and the SOP Class the
modality names is the one of the stored instance. Everything else fails with the reason of
PS3.4 J.3.2.1.3: no such object instance (0x0112), class/instance conflict (0x0119), or
processing failure (0x0110) when the store cannot be read.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom import dcmread
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared.dicom_vocabulary import DimseStatus
from shared.instance_index import InstanceIndexRow
from shared.store import ObjectStore
from services.ingest.tables import StoredInstance

log = logging.getLogger("mdd.ingest.commitment")
CLASS_INSTANCE_CONFLICT = 0x0119


@dataclass(frozen=True)
class Reference:
    """One instance named in an N-ACTION request."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass
class CommitmentResult:
    """The outcome of one commitment request: committed references and failed ones with their reason."""

    transaction_uid: str
    committed: list[Reference] = field(default_factory=list)
    failed: list[tuple[Reference, int]] = field(default_factory=list)

    @property
    def event_type(self) -> int:
        """N-EVENT-REPORT Event Type ID: 1 all committed, 2 some (or all) failed."""
        return 1 if not self.failed else 2


def _stored_class(store: ObjectStore, bucket: str, row: StoredInstance, engine: Engine) -> str:
    """The SOP Class of a stored instance: from the instance index, else from the stored header."""
    with Session(engine) as session:
        indexed = session.get(InstanceIndexRow, (row.hospital_id, row.sop_instance_uid))
    if indexed is not None and indexed.sop_class_uid:
        return indexed.sop_class_uid
    header = dcmread(io.BytesIO(store.get_bytes(bucket, row.object_key)), stop_before_pixels=True)
    return str(header.SOPClassUID)


def commit(
    engine: Engine, store: ObjectStore, bucket: str, hospital_id: str, transaction_uid: str, references: Iterable[Reference]
) -> CommitmentResult:
    """Decide, for each reference, whether we hold that instance durably for ``hospital_id`` (the
    requester's hospital: another hospital's instance is, for it, no such object). Reads the
    store's records of the objects, not the objects."""
    result = CommitmentResult(transaction_uid)
    for reference in references:
        with Session(engine) as session:
            row = session.get(StoredInstance, (hospital_id, reference.sop_instance_uid))
        if row is None:
            result.failed.append((reference, DimseStatus.NO_SUCH_OBJECT_INSTANCE))
            continue
        try:
            info = store.stat(bucket, row.object_key)
            if info is None or info.size != row.size_bytes or (info.sha256 is not None and info.sha256 != row.sha256):
                log.error("Objeto ausente o distinto / stored object missing or changed: %s", row.object_key)
                result.failed.append((reference, DimseStatus.NO_SUCH_OBJECT_INSTANCE))
                continue
            if _stored_class(store, bucket, row, engine) != reference.sop_class_uid:
                result.failed.append((reference, CLASS_INSTANCE_CONFLICT))
                continue
        except Exception as exc:  # the store is down: we cannot vouch for it now, the modality may ask again
            log.warning("No se pudo verificar / could not verify %s: %r", reference.sop_instance_uid, exc)
            result.failed.append((reference, DimseStatus.PROCESSING_FAILURE))
            continue
        result.committed.append(reference)
    return result
