"""Where a study's objects live in each bucket: always under its hospital, then its UIDs.

Two hospitals may send the same Study Instance UID (a misconfigured modality, a copied study): the
hospital in front keeps their objects apart, and UIDs are checked against PS3.5 before they become
keys (``shared.dicom_uids``), so no UID can reach into another's folder.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import StringConstraints

#: A hospital id is one path segment: letters, digits, ``.``, ``_`` and ``-``, at most 64 characters,
#: so that one hospital's folder is never inside another's (``A`` and ``A/1``).
HOSPITAL_ID_PATTERN: Final[str] = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
HospitalId = Annotated[str, StringConstraints(pattern=HOSPITAL_ID_PATTERN)]
_HOSPITAL_ID = re.compile(HOSPITAL_ID_PATTERN)


def hospital_problem(hospital_id: str) -> str | None:
    """Why ``hospital_id`` cannot name a hospital's folder, or ``None`` when it can."""
    if _HOSPITAL_ID.fullmatch(hospital_id):
        return None
    return (
        "Hospital inválido: letras, dígitos, '.', '_' y '-', hasta 64 / invalid hospital id:"
        " letters, digits, '.', '_' and '-', at most 64"
    )


def study_prefix(hospital_id: str, study_uid: str) -> str:
    """The folder of one hospital's study, in any bucket (ends with ``/``); raises ``ValueError`` for
    a hospital id that is not one path segment."""
    if problem := hospital_problem(hospital_id):
        raise ValueError(problem)
    return f"{hospital_id}/{study_uid}/"


def instance_key(hospital_id: str, study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    """Where a received instance lives in the DICOM bucket."""
    return f"{study_prefix(hospital_id, study_uid)}{series_uid}/{sop_instance_uid}.dcm"


def derived_prefix(hospital_id: str, study_uid: str, sop_instance_uid: str) -> str:
    """The folder of one view's derived images (crop, mask, overlay) in the derived bucket."""
    return f"{study_prefix(hospital_id, study_uid)}{sop_instance_uid}"


def result_key(hospital_id: str, study_uid: str, name: str) -> str:
    """One of our results for a study (SR, overlay) in the results bucket."""
    return f"{study_prefix(hospital_id, study_uid)}{name}"
