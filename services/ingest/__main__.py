"""Ingest service: the DICOM Storage SCP and study assembly (``mdd serve ingest``)."""

from __future__ import annotations

import asyncio

from shared.db import init_db
from shared.instance_index import register_index
from shared.runtime import ServiceContext, WebComponent
from pynetdicom import evt

from services.ingest.adapters.scp import start_scp, tls_context
from services.ingest.adapters.web import create_ingest_app
from services.ingest.handlers import (
    handle_echo,
    make_commitment_scp,
    make_find_handler,
    make_get_handler,
    make_move_handler,
    make_request_handler,
    make_store_handler,
)
from services.ingest.query import Holdings
from services.ingest.intake import Ingest
from services.ingest.poller import PacsPoll, PacsPoller
from services.ingest.tables import AssemblingStudy, PendingCommitmentReport, StoredInstance
from shared.reliability.tables import RELIABILITY_TABLES

SERVICE = "ingest"


class IngestComponent:
    """Runs the SCP, the HTTP front doors, the quiet-study scan and the PACS poller (the last two on the lease holder)."""

    def __init__(self, ctx: ServiceContext) -> None:
        init_db(ctx.engine, [StoredInstance, AssemblingStudy, PacsPoll, PendingCommitmentReport, *RELIABILITY_TABLES])
        self.ctx = ctx
        self.ingest = Ingest(ctx.settings, ctx.store, ctx.bus, ctx.engine)
        self._server = None
        self._holdings = Holdings(ctx.engine, ctx.store, ctx.settings.bucket_dicom, ctx.settings.bucket_results)
        self._commitment = make_commitment_scp(ctx.settings, self._holdings)
        self._commitment_reports = self._commitment.periodic()
        self._poller = PacsPoller(self.ingest).periodic() if ctx.settings.pacs_host else None
        self._web = WebComponent(create_ingest_app(self.ingest), ctx.settings.ingest_http_host, ctx.settings.ingest_http_port)

    async def start(self) -> None:
        settings = self.ctx.settings
        context = None
        if settings.dicom_tls_cert and settings.dicom_tls_key:
            context = tls_context(settings.dicom_tls_cert, settings.dicom_tls_key, settings.dicom_tls_ca)
        holdings = self._holdings
        self._server = start_scp(
            settings,
            [
                (evt.EVT_REQUESTED, make_request_handler(settings)),
                (evt.EVT_C_ECHO, handle_echo),
                (evt.EVT_C_STORE, make_store_handler(self.ingest)),
                (evt.EVT_C_FIND, make_find_handler(settings, holdings)),
                (evt.EVT_C_MOVE, make_move_handler(settings, holdings)),
                (evt.EVT_C_GET, make_get_handler(settings, holdings)),
                *self._commitment.handlers(),
            ],
            spool_dir=settings.resolved_spool_dir,
            ssl_context=context,
            early_upload=self.ingest.start_upload,
        )
        await self.ingest.quiet_scan.start()
        await self._commitment_reports.start()
        if self._poller is not None:
            await self._poller.start()
        await self._web.start()

    async def stop(self) -> None:
        await self._web.stop()
        for task in (self.ingest.quiet_scan, self._commitment_reports, self._poller):
            if task is not None:
                await task.stop()
        if self._server:
            await asyncio.to_thread(self._server.shutdown)


def register(ctx: ServiceContext) -> IngestComponent:
    """Ingest subscribes to nothing: it writes the index its Query/Retrieve SCP searches as it records each instance."""
    register_index(ctx)
    return IngestComponent(ctx)


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)
