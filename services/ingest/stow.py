"""DICOMweb STOW-RS: multipart/related bodies in, the standard store response out (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.dicom_vocabulary import DimseStatus

SUCCESS = DimseStatus.SUCCESS
PROCESSING_FAILURE = DimseStatus.PROCESSING_FAILURE


class MultipartError(ValueError):
    """The body is not a well-formed multipart/related message."""


@dataclass(frozen=True)
class StoredItem:
    """The outcome of one part: stored (with its retrieve URL) or failed (with a reason code)."""

    sop_class_uid: str
    sop_instance_uid: str
    retrieve_url: str | None = None
    failure_reason: int | None = None


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart Content-Type header."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"')
    raise MultipartError("Falta el parámetro boundary / missing boundary parameter")


def split_parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart body into (headers, content) pairs, bytes kept exactly as sent."""
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise MultipartError("Cuerpo multipart sin partes / multipart body without parts")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, separator, content = chunk.partition(b"\r\n\r\n")
        if not separator:
            raise MultipartError("Parte sin encabezados / part without headers")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content.removesuffix(b"\r\n")))
    return parts


def store_response(items: list[StoredItem], study_url: str | None) -> dict:
    """The STOW-RS response in DICOM JSON: ReferencedSOPSequence and FailedSOPSequence."""
    referenced = [item for item in items if item.failure_reason is None]
    failed = [item for item in items if item.failure_reason is not None]
    response: dict = {}
    if study_url:
        response["00081190"] = {"vr": "UR", "Value": [study_url]}
    if referenced:
        response["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [item.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [item.sop_instance_uid]},
                    "00081190": {"vr": "UR", "Value": [item.retrieve_url]},
                }
                for item in referenced
            ],
        }
    if failed:
        response["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [item.sop_class_uid]} if item.sop_class_uid else {"vr": "UI"},
                    "00081155": {"vr": "UI", "Value": [item.sop_instance_uid]} if item.sop_instance_uid else {"vr": "UI"},
                    "00081197": {"vr": "US", "Value": [item.failure_reason]},
                }
                for item in failed
            ],
        }
    return response


def http_status(items: list[StoredItem]) -> int:
    """200 when every instance was stored, 202 when some failed, 409 when all failed (PS3.18)."""
    failures = sum(item.failure_reason is not None for item in items)
    if not items or failures == len(items):
        return 409
    return 202 if failures else 200
