"""What a RIS or HIS needs to file a result: the patient, the order and the images of the study.

Events carry no patient identity, so the identity is read here from the index of stored instances
(:mod:`shared.instance_index`, one row per stored image with its header's attributes); when the
index has no row yet, from the stored header of the study's first image.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field

from pydicom import dcmread
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from shared.events import StudyInferred
from shared.instance_index import InstanceIndexRow, row_from_header
from shared.store import ObjectStore
from shared.object_keys import study_prefix


@dataclass(frozen=True)
class SeriesFacts:
    """One series of the study: its modality, the side it shows and its instances (SOP instance, SOP class)."""

    series_uid: str
    modality: str
    number: int | None
    laterality: str | None
    instances: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class StudyFacts:
    """The patient, order and images of a study, as the hospital's systems know them."""

    study_uid: str
    hospital_id: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    accession_number: str
    study_date: str
    study_time: str
    study_description: str
    series: tuple[SeriesFacts, ...] = field(default_factory=tuple)

    @property
    def family_name(self) -> str:
        return self.patient_name.split("^")[0]

    @property
    def given_names(self) -> list[str]:
        parts = self.patient_name.split("^")
        return [part for part in parts[1:3] if part]


class StudyNotFound(LookupError):
    """Neither the index nor the store has an image of the study (yet): the bus retries later."""


def _rows(engine: Engine, store: ObjectStore, bucket: str, event: StudyInferred) -> list[InstanceIndexRow]:
    with Session(engine) as session:
        rows = list(
            session.exec(
                select(InstanceIndexRow).where(
                    InstanceIndexRow.study_uid == event.study_uid, InstanceIndexRow.hospital_id == event.hospital_id
                )
            ).all()
        )
    if rows:
        return rows
    for key in store.list_keys(bucket, study_prefix(event.hospital_id, event.study_uid)):
        raw = store.get_bytes(bucket, key)
        header = dcmread(io.BytesIO(raw), stop_before_pixels=True)
        if "Rows" in header:
            return [row_from_header(header, event.hospital_id, key, len(raw))]
    raise StudyNotFound(f"Sin imágenes del estudio / no stored images of study {event.study_uid}")


def study_facts(engine: Engine, store: ObjectStore, bucket: str, event: StudyInferred) -> StudyFacts:
    """The facts of the event's study; raises :class:`StudyNotFound` while nothing of it is stored."""
    rows = sorted(_rows(engine, store, bucket, event), key=lambda r: (r.series_number or 0, r.series_uid, r.instance_number or 0))
    first = rows[0]
    by_series: dict[str, list[InstanceIndexRow]] = defaultdict(list)
    for row in rows:
        by_series[row.series_uid].append(row)
    issuer = ""
    if first.metadata_json.get("00100021", {}).get("Value"):
        issuer = str(first.metadata_json["00100021"]["Value"][0])
    return StudyFacts(
        study_uid=event.study_uid,
        hospital_id=event.hospital_id,
        patient_id=first.patient_id,
        issuer_of_patient_id=issuer or event.hospital_id,
        patient_name=first.patient_name,
        birth_date=first.patient_birth_date,
        sex=first.patient_sex,
        accession_number=first.accession_number or event.accession_number,
        study_date=first.study_date,
        study_time=first.study_time,
        study_description=first.study_description,
        series=tuple(
            SeriesFacts(
                series_uid=uid,
                modality=items[0].modality,
                number=items[0].series_number,
                laterality=items[0].laterality,
                instances=tuple((item.sop_instance_uid, item.sop_class_uid) for item in items),
            )
            for uid, items in by_series.items()
        ),
    )
