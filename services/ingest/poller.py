"""Pulling from a PACS, for hospitals whose modalities cannot be re-pointed at us."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlmodel import Field, Session, SQLModel

from shared.events import utc_now
from shared.reliability.lease import LeaderLease
from shared.reliability.periodic import PeriodicTask
from shared.settings import DicomDestination
from services.ingest.adapters.pacs import find_studies, get_study, move_study
from services.ingest.adapters.scp import ReceivedInstance
from services.ingest.intake import Ingest
from services.ingest.tables import AssemblingStudy

log = logging.getLogger("mdd.ingest.pacs")


class PacsPoll(SQLModel, table=True):
    """When a PACS was last polled, so that a restart asks only for what is new."""

    __tablename__ = "ingest_pacs_poll"

    pacs: str = Field(primary_key=True)
    last_poll_date: str


class PacsPoller:
    """Finds new mammography studies on the configured PACS and retrieves them through ``Ingest``."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        settings = ingest.settings
        if not settings.pacs_host:
            raise ValueError("MDD_PACS_HOST no está configurado / not configured")
        self.host, self.port, self.called_ae = settings.pacs_host, settings.pacs_port, settings.pacs_ae_title
        self.key = f"{self.called_ae}@{self.host}:{self.port}"
        self.hospital_id = settings.pacs_hospital_id or settings.hospital_id

    def _since(self) -> str:
        with Session(self.ingest.engine) as session:
            row = session.get(PacsPoll, self.key)
        first = utc_now() - timedelta(days=self.ingest.settings.pacs_lookback_days)
        return row.last_poll_date if row else first.strftime("%Y%m%d")

    def _remember(self, date: str) -> None:
        with Session(self.ingest.engine) as session:
            session.merge(PacsPoll(pacs=self.key, last_poll_date=date))
            session.commit()

    def _known(self, study_uid: str) -> bool:
        with Session(self.ingest.engine) as session:
            study = session.get(AssemblingStudy, (self.hospital_id, study_uid))
        return study is not None and study.completed_at is not None

    def poll_once(self) -> int:
        """One poll: C-FIND since the last poll, C-GET each study not yet completed here.

        Returns how many instances were retrieved.
        """
        started = utc_now().strftime("%Y%m%d")
        settings = self.ingest.settings
        pacs = DicomDestination(host=self.host, port=self.port, ae_title=self.called_ae, tls=settings.pacs_tls)
        studies = find_studies(settings, pacs, settings.pacs_modality, self._since())
        retrieved = 0
        for study in studies:
            if self._known(study.study_uid):
                continue
            log.info("Trayendo estudio del PACS / retrieving from PACS (%s): %s", settings.pacs_retrieve, study.study_uid)
            if settings.pacs_retrieve == "C-MOVE":
                retrieved += move_study(settings, pacs, study.study_uid)
            else:
                retrieved += get_study(settings, pacs, study.study_uid, self._store)
        # The next poll starts at the date this one started: StudyDate has day granularity.
        self._remember(started)
        return retrieved

    def _store(self, received: ReceivedInstance) -> int:
        outcome = self.ingest.accept(
            received.payload,
            calling_ae=self.called_ae,
            hospital_id=self.hospital_id,
            digest=received.digest,
            upload=received.upload,
        )
        if not outcome.ok:
            log.warning("Instancia del PACS rechazada 0x%04X: %s", outcome.status, outcome.message)
        return outcome.status

    def periodic(self) -> PeriodicTask:
        """The poll as a periodic task every ``MDD_PACS_POLL_SECONDS``, run by one ingest replica at a time."""
        interval = self.ingest.settings.pacs_poll_seconds
        name = f"ingest.pacs-poll:{self.key}"
        return PeriodicTask(name, lambda: asyncio.to_thread(self.poll_once), interval,
                            lease=LeaderLease(self.ingest.engine, name, ttl_seconds=max(30.0, 3 * interval)))
