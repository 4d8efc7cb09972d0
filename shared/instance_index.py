"""Índice de instancias / the index of stored instances: one row per instance, written by ingest.

QIDO-RS and WADO-RS (status API) and the Query/Retrieve SCP (ingest) search this table instead
of opening stored objects. Ingest writes the row from the header it has just parsed, in the same
transaction that records the instance, so an acknowledged instance is searchable at once and no
service reads the object again for it: the few attributes QIDO matches and returns (patient, study,
series and instance attributes) and its WADO-RS metadata (DICOM JSON without bulk data), so that a
viewer loading a study's metadata does not make the server read every image again.

The row is keyed by the SOP Instance UID: an instance sent again replaces its row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import pydicom
from pydicom.uid import UID, ExplicitVRLittleEndian
from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from shared.db import init_db
from shared.events import InstanceStored, utc_now
from shared.runtime import ServiceContext


#: Binary values larger than this are served as bulk data (``BulkDataURI``) instead of inline.
BULK_DATA_THRESHOLD: Final[int] = 64 * 1024
#: Relative bulk data URIs in stored metadata start with this; requests resolve them to absolute URLs.
RELATIVE_BULK_PREFIX: Final[str] = "bulkdata/"
PIXEL_DATA_TAG: Final[str] = "7FE00010"
AVAILABLE_TRANSFER_SYNTAX_TAG: Final[str] = "00083002"


class InstanceIndexRow(SQLModel, table=True):
    """One stored instance as DICOMweb searches and serves it."""

    __tablename__ = "status_instance"

    hospital_id: str = Field(primary_key=True)
    sop_instance_uid: str = Field(primary_key=True)
    study_uid: str = Field(index=True)
    series_uid: str = Field(index=True)
    object_key: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str = Field("", index=True)
    laterality: str | None = None
    view_position: str | None = None
    size_bytes: int = 0
    patient_name: str = ""
    patient_id: str = Field("", index=True)
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = Field("", index=True)
    study_time: str = ""
    accession_number: str = Field("", index=True)
    study_description: str = ""
    study_id: str = ""
    referring_physician_name: str = ""
    series_number: int | None = None
    series_description: str = ""
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    number_of_frames: int = 1
    metadata_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    indexed_at: datetime


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _integer(ds: pydicom.Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _relative_bulk_uri(element: pydicom.DataElement) -> str:
    return f"{RELATIVE_BULK_PREFIX}{element.tag:08X}"


def header_metadata(ds: pydicom.Dataset, transfer_syntax_uid: str, frames: int) -> dict[str, Any]:
    """WADO-RS metadata of an instance read without its pixels, with relative bulk data URIs.

    Pixel data point at the instance's ``frames/1,...,N`` resource; other large binary values at
    ``bulkdata/{tag}``. The router makes both absolute for each request.
    """
    metadata: dict[str, Any] = ds.to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD,
        bulk_data_element_handler=_relative_bulk_uri,
        suppress_invalid_tags=True,
    )
    metadata[AVAILABLE_TRANSFER_SYNTAX_TAG] = {"vr": "UI", "Value": [transfer_syntax_uid]}
    if "Rows" in ds and "Columns" in ds:
        native_words = not UID(transfer_syntax_uid).is_compressed and int(ds.get("BitsAllocated", 8) or 8) > 8
        frame_list = ",".join(str(number) for number in range(1, frames + 1))
        metadata[PIXEL_DATA_TAG] = {
            "vr": "OW" if native_words else "OB",
            "BulkDataURI": f"frames/{frame_list}",
        }
    return metadata


def row_for(event: InstanceStored, header: pydicom.Dataset) -> InstanceIndexRow:
    """The index row of a stored instance: the event's fields plus its header's attributes."""
    return _row(
        header,
        sop_instance_uid=event.sop_instance_uid,
        study_uid=event.study_uid,
        series_uid=event.series_instance_uid,
        hospital_id=event.hospital_id,
        object_key=event.object_key,
        sop_class_uid=event.sop_class_uid,
        transfer_syntax_uid=event.transfer_syntax_uid,
        modality=event.modality,
        laterality=event.laterality,
        view_position=event.view_position,
        size_bytes=event.size_bytes,
        accession_number=event.accession_number,
    )


def row_from_header(header: pydicom.Dataset, hospital_id: str, object_key: str, size_bytes: int) -> InstanceIndexRow:
    """An index row (not stored) for an object known only by its header, e.g. one of our results."""
    meta = getattr(header, "file_meta", None)
    return _row(
        header,
        sop_instance_uid=str(header.SOPInstanceUID),
        study_uid=str(header.StudyInstanceUID),
        series_uid=str(header.SeriesInstanceUID),
        hospital_id=hospital_id,
        object_key=object_key,
        sop_class_uid=str(header.SOPClassUID),
        transfer_syntax_uid=str(getattr(meta, "TransferSyntaxUID", "") or ExplicitVRLittleEndian),
        modality=_text(header, "Modality"),
        laterality=_text(header, "ImageLaterality") or _text(header, "Laterality") or None,
        view_position=_text(header, "ViewPosition") or None,
        size_bytes=size_bytes,
        accession_number="",
    )


def _row(ds: pydicom.Dataset, **identity: Any) -> InstanceIndexRow:
    frames = _integer(ds, "NumberOfFrames") or 1
    return InstanceIndexRow(
        **{
            **identity,
            "modality": identity["modality"] or _text(ds, "Modality"),
            "accession_number": _text(ds, "AccessionNumber") or identity["accession_number"],
        },
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        study_id=_text(ds, "StudyID"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        series_number=_integer(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        instance_number=_integer(ds, "InstanceNumber"),
        rows=_integer(ds, "Rows"),
        columns=_integer(ds, "Columns"),
        bits_allocated=_integer(ds, "BitsAllocated"),
        number_of_frames=frames,
        metadata_json=header_metadata(ds, identity["transfer_syntax_uid"], frames),
        indexed_at=utc_now(),
    )


def register_index(ctx: ServiceContext) -> None:
    """Create the index table where it does not exist yet (embedded mode; migrations elsewhere).

    Ingest writes each row in the transaction that records the instance, so a service that reads the
    index needs the table, not a consumer of ``instance.stored``.
    """
    init_db(ctx.engine, [InstanceIndexRow])
