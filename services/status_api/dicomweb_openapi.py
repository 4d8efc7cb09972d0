"""What the DICOMweb routes answer, as the OpenAPI declares it: PS3.18 media types and error statuses.

The routes build their own responses (DICOM JSON, ``multipart/related`` with a boundary, images);
the classes here give FastAPI the media type of each success, and the ``responses`` maps give the
body schemas and the statuses a caller can meet (400, 401, 403, 404, 406).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi.responses import JSONResponse, Response

from services.status_api.dicomweb_wado import DICOM_JSON

MULTIPART_RELATED: Final[str] = "multipart/related"


class DicomJSONResponse(JSONResponse):
    """A DICOM JSON body (PS3.18 Annex F), ``application/dicom+json``."""

    media_type = DICOM_JSON


class MultipartRelatedResponse(Response):
    """A ``multipart/related`` body; the real Content-Type adds the parts' ``type`` and the boundary."""

    media_type = MULTIPART_RELATED


class RenderedResponse(Response):
    """A rendered image (``image/jpeg`` by default, ``image/png`` on request)."""

    media_type = "image/jpeg"


_BINARY: Final[dict[str, Any]] = {"schema": {"type": "string", "format": "binary"}}
_ATTRIBUTE: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["vr"],
    "properties": {
        "vr": {"type": "string"},
        "Value": {"type": "array"},
        "BulkDataURI": {"type": "string"},
        "InlineBinary": {"type": "string"},
    },
}
_DICOM_JSON_BODY: Final[dict[str, Any]] = {
    "schema": {
        "type": "array",
        "items": {"type": "object", "additionalProperties": _ATTRIBUTE},
        "description": "Objetos DICOM JSON, llaves = etiquetas GGGGEEEE / DICOM JSON objects keyed by tag",
    }
}
_ERROR_BODY: Final[dict[str, Any]] = {
    "application/json": {
        "schema": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}
    }
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _ERROR_BODY}


_ACCESS: Final[dict[int | str, dict[str, Any]]] = {
    401: _error("Sin token válido / no valid bearer token"),
    403: _error("Rol sin acceso a DICOMweb / role without DICOMweb access"),
}
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: _error("No existe o es de otro hospital / not found or of another hospital"),
    409: _error("Los UID existen en varios hospitales visibles: indique ?hospital= / the UIDs exist in several visible"
                " hospitals: give ?hospital="),
}
_NOT_ACCEPTABLE: Final[dict[int | str, dict[str, Any]]] = {
    406: _error("No se puede entregar lo que pide Accept / cannot produce what Accept asks for"),
}

QIDO: Final[dict[int | str, dict[str, Any]]] = {
    200: {"description": "Coincidencias / matches (QIDO-RS)", "content": {DICOM_JSON: _DICOM_JSON_BODY}},
    400: _error("Parámetro de búsqueda inválido / invalid search parameter"),
    **_ACCESS,
}
METADATA: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "Metadatos sin píxeles / metadata without pixel data",
        "content": {DICOM_JSON: _DICOM_JSON_BODY},
    },
    **_NOT_FOUND,
    **_ACCESS,
}
INSTANCES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": 'Instancias guardadas / stored instances: multipart/related; type="application/dicom"',
        "content": {MULTIPART_RELATED: _BINARY},
    },
    **_NOT_FOUND,
    **_NOT_ACCEPTABLE,
    **_ACCESS,
}
FRAMES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "Cuadros, uno por parte / frames, one per part: multipart/related",
        "content": {MULTIPART_RELATED: _BINARY},
    },
    400: _error("Números de cuadro inválidos / invalid frame numbers"),
    **_NOT_FOUND,
    **_NOT_ACCEPTABLE,
    **_ACCESS,
}
BULKDATA: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": 'Valor binario / bulk data: multipart/related; type="application/octet-stream"',
        "content": {MULTIPART_RELATED: _BINARY},
    },
    **_NOT_FOUND,
    **_ACCESS,
}
RENDERED: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "Imagen para mostrar / image for display",
        "content": {"image/jpeg": _BINARY, "image/png": _BINARY},
    },
    **_NOT_FOUND,
    **_NOT_ACCEPTABLE,
    **_ACCESS,
}
_STORE_RESPONSE: Final[dict[str, Any]] = {
    "schema": {"type": "object", "additionalProperties": _ATTRIBUTE, "description": "Store Instances Response (PS3.18 10.5.3)"}
}
STOW: Final[dict[int | str, dict[str, Any]]] = {
    200: {"description": "Todas almacenadas / all stored", "content": {DICOM_JSON: _STORE_RESPONSE}},
    202: {"description": "Algunas fallaron / some failed (Failed SOP Sequence)", "content": {DICOM_JSON: _STORE_RESPONSE}},
    409: {"description": "Ninguna almacenada / none stored", "content": {DICOM_JSON: _STORE_RESPONSE}},
    400: _error("Cuerpo multipart inválido u hospital sin indicar / invalid multipart body or hospital not named"),
    415: _error('Se espera multipart/related; type="application/dicom" / expected multipart/related'),
    503: _error("Ingesta no disponible; reintente / ingest unavailable, retry"),
    **_ACCESS,
}
