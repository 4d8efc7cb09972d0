"""The project's DICOM identity: its UID root, implementation class UID and version name.

Mexican Deep DICOM has no registered ISO OID, so its root is a UUID-derived OID (ISO/IEC 9834-8,
PS3.5 B.2): ``2.25.`` followed by the decimal value of a fixed UUID, owned by the project. Under it,
``.1`` names the implementation (Implementation Class UID, one per release) and ``.2`` is the
default root of the instances we create (``MDD_UID_ROOT``; a hospital with its own root sets it).
"""

from __future__ import annotations

import re
from typing import Final

from pydicom.uid import generate_uid

from shared import __version__

#: The project's UID root: UUID 06045e08-8a67-5462-b845-38387a28ff18 written as a 2.25 OID.
PROJECT_UID_ROOT: Final[str] = "2.25.7998044385305527133681003591310573336"
#: Implementation Class UID of this release (A-ASSOCIATE and File Meta Information).
IMPLEMENTATION_CLASS_UID: Final[str] = f"{PROJECT_UID_ROOT}.1.{__version__}"
#: Implementation Version Name (at most 16 characters).
IMPLEMENTATION_VERSION_NAME: Final[str] = f"MDD_{__version__}"[:16]
#: Default root of the UIDs of the instances we create (results, mosaics, storage commitment).
DEFAULT_INSTANCE_UID_ROOT: Final[str] = f"{PROJECT_UID_ROOT}.2."


def derived_uid(root: str, *parts: str) -> str:
    """A UID under ``root`` (ending in ``.``) that depends only on ``parts``: the same parts, the same UID."""
    return str(generate_uid(prefix=root, entropy_srcs=[str(part) for part in parts]))


#: PS3.5 §9.1: a UID is at most 64 characters of digits and dots.
UID_MAX_LENGTH: Final[int] = 64
_UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a UID under PS3.5 §9.1 (digits and dots, at most 64 characters), or None.

    Components with a leading zero, which PS3.5 also forbids, are accepted: legacy modalities write
    them, and they cannot make two object keys collide. The reason never repeats a long value whole.
    """
    uid = value.rstrip("\x00 ")
    if len(uid) > UID_MAX_LENGTH:
        return f"{len(uid)} caracteres, máximo {UID_MAX_LENGTH} / {len(uid)} characters, at most {UID_MAX_LENGTH}"
    if not _UID_PATTERN.fullmatch(uid):
        return f"solo dígitos y puntos / digits and dots only: {uid!r}"
    return None
