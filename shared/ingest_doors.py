"""The contract between the status API and ingest's HTTP doors (STOW-RS and ZIP uploads).

People and keys store through the status API, which authenticates them (users, keys, roles, the
hospitals they may store for) and forwards the body, streamed, with ``MDD_INGEST_HTTP_TOKEN``
(:func:`shared.local_secrets.ingest_http_token`) and the headers below. Ingest believes the headers
only from a request that carries the token.
"""

from __future__ import annotations

from typing import Final

#: The hospital the instances belong to, decided by the API from the caller's scope.
HOSPITAL_HEADER: Final[str] = "x-mdd-hospital"
#: The DICOMweb root the caller used: the Retrieve URLs of a STOW-RS answer point there.
DICOMWEB_ROOT_HEADER: Final[str] = "x-mdd-dicomweb-root"
#: Who stored (``user:name`` or ``apikey:name``), for ingest's log.
STORED_BY_HEADER: Final[str] = "x-mdd-stored-by"

#: Bodies ``/uploads`` takes: a ZIP as the body, or a form whose field ``file`` is the ZIP.
ZIP_MEDIA_TYPES: Final[frozenset[str]] = frozenset(
    {"application/zip", "application/x-zip-compressed", "application/octet-stream", "multipart/form-data"}
)


def zip_media_type_problem(content_type: str) -> str | None:
    """Why an upload's Content-Type is refused (415), or ``None`` when it is a ZIP or a form."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in ZIP_MEDIA_TYPES:
        return None
    return (
        f"Se espera application/zip o multipart/form-data, no {media_type or 'nada'}"
        f" / expected application/zip or multipart/form-data, not {media_type or 'nothing'}"
    )
