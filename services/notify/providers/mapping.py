"""De-identified study UIDs back to the originals, so a provider's report can be filed."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from services.notify.providers.tables import DeidStudyMap


class UnknownDeidStudy(KeyError):
    """No study was sent to that provider under that de-identified UID."""


def record_mapping(engine: Engine, mapping: DeidStudyMap) -> None:
    """Keep ``mapping`` (once: a redelivery finds it already there)."""
    with Session(engine) as session:
        if session.get(DeidStudyMap, (mapping.provider_id, mapping.deid_study_uid)) is not None:
            return
        session.add(mapping)
        try:
            session.commit()
        except IntegrityError:  # another consumer recorded the same mapping at the same time
            session.rollback()


def lookup(engine: Engine, provider_id: str, deid_study_uid: str) -> DeidStudyMap:
    """The mapping row of a de-identified study; raises ``UnknownDeidStudy``."""
    with Session(engine) as session:
        row = session.get(DeidStudyMap, (provider_id, deid_study_uid))
    if row is None:
        raise UnknownDeidStudy(
            f"Estudio anonimizado desconocido para {provider_id!r} / unknown de-identified study: {deid_study_uid}"
        )
    return row


def reidentify(engine: Engine, provider_id: str, deid_study_uid: str) -> str:
    """The original StudyInstanceUID behind what ``provider_id`` knows as ``deid_study_uid`` (its hospital is
    ``lookup(...).hospital_id``: a UID names a study only within its hospital)."""
    return lookup(engine, provider_id, deid_study_uid).study_uid
