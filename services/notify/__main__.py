"""Notify service: messages by rule per hospital, each once; daily digests (``mdd serve notify``)."""

from __future__ import annotations

import logging

from shared.db import init_db
from shared.events import StudyFailed, StudyInferred, StudyOverdue
from shared.runtime import ComponentGroup, ServiceContext
from services.notify.config import load_rulebook
from services.notify.delivery import SERVICE, Deliverer
from services.notify.digest import DailyDigest
from services.notify.handlers import NotifyHandlers
from services.notify.pacs_results import register_pacs_results
from services.notify.ris import register_ris
from services.notify.providers.subscriber import register_providers
from services.notify.scheduler import NotifyScheduler
from services.notify.tables import GreenStudy, NotificationRecord

log = logging.getLogger("mdd.notify")


def register_rules(ctx: ServiceContext) -> NotifyScheduler:
    """Check the rules (a bad file stops the service, exit code 2), subscribe, and return the digest clock."""
    book = load_rulebook(ctx.settings)
    if ctx.settings.notify_rules_file is not None and (ctx.settings.notify_emails or ctx.settings.notify_red_emails):
        log.warning("MDD_NOTIFY_EMAILS se ignora: manda el archivo de reglas / ignored: the rules file decides")
    init_db(ctx.engine, [NotificationRecord, GreenStudy])
    deliverer = Deliverer(ctx, book)
    handlers = NotifyHandlers(ctx, book, deliverer)
    ctx.bus.subscribe(StudyInferred, handlers.on_event, service=SERVICE)
    ctx.bus.subscribe(StudyFailed, handlers.on_event, service=SERVICE, group=f"{SERVICE}-failures")
    ctx.bus.subscribe(StudyOverdue, handlers.on_event, service=SERVICE, group=f"{SERVICE}-overdue")
    return NotifyScheduler(DailyDigest(ctx.settings, ctx.engine, book, deliverer), deliverer)


def register(ctx: ServiceContext) -> ComponentGroup:
    """Every notify subscriber, one line each; the components that run their sweeps and the digests."""
    scheduler = register_rules(ctx)  # rules per hospital: e-mail, SMS, webhooks, chat; daily digest
    register_pacs_results(ctx)  # SR and mosaic back to the hospital's PACS, when one is configured
    register_ris(ctx)  # HL7 ORU^R01 and FHIR results to the hospital's RIS and HIS, when rules name them
    providers = register_providers(ctx)  # external providers: signed webhooks and their own topics
    return ComponentGroup([scheduler, providers])


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)
