"""Patient identity from the first stored instance's DICOM header (never from events)."""

from __future__ import annotations

import io
import logging
import re

import pydicom
from pydicom.errors import InvalidDicomError

from shared.settings import Settings
from shared.store import ObjectNotFound, ObjectStore
from shared.object_keys import study_prefix
from services.status_api.schemas import PatientIdentity

log = logging.getLogger("mdd.status_api")
CURP_PATTERN = re.compile(r"^[A-Z][AEIOUX][A-Z]{2}\d{6}[HMX][A-Z]{5}[A-Z0-9]\d$")


def _curp(candidates: list[str]) -> str | None:
    for value in candidates:
        if CURP_PATTERN.match(value.strip().upper()):
            return value.strip().upper()
    return None


def patient_identity(store: ObjectStore, settings: Settings, hospital_id: str, study_uid: str) -> PatientIdentity | None:
    """Name, ID and CURP of the study's patient, or None when no readable instance is stored."""
    keys = store.list_keys(settings.bucket_dicom, study_prefix(hospital_id, study_uid))
    if not keys:
        return None
    try:
        header = pydicom.dcmread(io.BytesIO(store.get_bytes(settings.bucket_dicom, keys[0])), stop_before_pixels=True)
    except (ObjectNotFound, InvalidDicomError, OSError) as exc:
        log.warning("Encabezado ilegible / unreadable header %s: %s", keys[0], exc)
        return None
    patient_id = str(header.get("PatientID", "") or "")
    others = header.get("OtherPatientIDs", None)
    other_ids = [str(v) for v in (others if isinstance(others, (list, pydicom.multival.MultiValue)) else [others])] if others else []
    for item in header.get("OtherPatientIDsSequence", []) or []:
        other_ids.append(str(item.get("PatientID", "")))
    return PatientIdentity(
        patient_name=str(header.get("PatientName", "") or ""),
        patient_id=patient_id,
        curp=_curp(other_ids + [patient_id]),
    )
