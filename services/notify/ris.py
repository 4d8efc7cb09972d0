"""Results to the hospital's RIS and HIS: HL7 v2.5 ORU^R01 over MLLP and FHIR R4, by the hospital's rules.

A recipient of a ``study.inferred`` rule whose channel is ``mllp://…`` gets the ORU^R01 of
:mod:`services.notify.hl7_result`; one whose channel is ``fhir+https://…`` gets the transaction
Bundle of :mod:`services.notify.fhir_result`. Each goes through the same claim-and-deliver of every
other notification (:mod:`services.notify.delivery`): sent at most once per study, rule and
target, retried, dead-lettered and reported by ``notification.sent`` like the rest.

The patient's identity, which no event carries, is read from the index of stored instances
(:mod:`services.notify.study_facts`); until the study's images are indexed the event is retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from shared.db import init_db
from shared.events import StudyInferred, utc_now
from shared.instance_index import InstanceIndexRow
from shared.runtime import ServiceContext
from services.notify.adapters.channels import RESULT_KINDS
from services.notify.config import RuleBook, load_rulebook
from services.notify.delivery import SERVICE, Deliverer, Delivery, Origin
from services.notify.fhir_result import fhir_bundle
from services.notify.hl7_result import oru_r01
from services.notify.rules import Notification, rule_applies
from services.notify.study_facts import StudyFacts, study_facts

log = logging.getLogger("mdd.notify.ris")
GROUP = "notify-ris"
SUBJECTS = {"hl7": "ORU^R01", "fhir": "FHIR Bundle"}


def control_id(key: str) -> str:
    """MSH-10 of a delivery: the same for every send of it (a RIS de-duplicates on it), 20 characters."""
    return "MDD" + hashlib.sha256(key.encode()).hexdigest()[:17].upper()


def result_body(kind: str, event: StudyInferred, facts: StudyFacts, key: str) -> str:
    """The message a channel of ``kind`` carries for the event."""
    now = utc_now()
    if kind == "hl7":
        return oru_r01(event, facts, control_id(key), now)
    return fhir_bundle(event, facts, now)


class RisResults:
    """Plans and delivers the structured results of an inferred study by its hospital's rules."""

    def __init__(self, ctx: ServiceContext, book: RuleBook, deliverer: Deliverer) -> None:
        self.ctx, self.book, self.deliverer = ctx, book, deliverer

    def planned(self, event: StudyInferred) -> list[tuple[str, object, object, object]]:
        """(key, rule, recipient, channel) of every HL7 or FHIR delivery the event calls for."""
        hospital = self.book.for_hospital(event.hospital_id)
        if hospital is None:
            return []
        found = []
        for rule in hospital.rules:
            if not rule_applies(rule, event):
                continue
            for recipient in rule.recipients:
                for channel in rule.channels_of(recipient):
                    if channel.kind in RESULT_KINDS:
                        key = f"{event.hospital_id}:{event.study_uid}:{rule.id}:{channel.kind}:{recipient.id}:{channel.target}"
                        found.append((key, rule, recipient, channel))
        return found

    async def on_inferred(self, event: StudyInferred) -> None:
        """Send the study's result to every RIS and FHIR server its hospital's rules name, each once."""
        planned = self.planned(event)
        if not planned:
            return
        settings = self.ctx.settings
        facts = await asyncio.to_thread(study_facts, self.ctx.engine, self.ctx.store, settings.bucket_dicom, event)
        origin = Origin.of(event, self.ctx.bus.topic(event))
        deliveries = []
        for key, rule, recipient, channel in planned:
            body = result_body(channel.kind, event, facts, key)  # type: ignore[attr-defined]
            notification = Notification(
                rule.id, channel.kind, recipient.id, channel.target,  # type: ignore[attr-defined]
                SUBJECTS[channel.kind], body, channel.url,  # type: ignore[attr-defined]
            )
            deliveries.append(Delivery(key, notification, origin))
        await self.deliverer.deliver_all(deliveries, reopen_failed=True)


def register_ris(ctx: ServiceContext) -> None:
    """Subscribe the RIS/HIS sender in its own consumer group when some rule names an HL7 or FHIR channel."""
    book = load_rulebook(ctx.settings)
    uses = any(
        channel.kind in RESULT_KINDS
        for hospital in book.hospitals.values()
        for rule in hospital.rules
        for recipient in rule.recipients
        for channel in rule.channels_of(recipient)
    )
    if not uses:
        return
    init_db(ctx.engine, [InstanceIndexRow])  # where the patient's identity is read
    ctx.bus.subscribe(StudyInferred, RisResults(ctx, book, Deliverer(ctx, book)).on_inferred, service=SERVICE, group=GROUP)
    log.info("Resultados a RIS/HIS activados (HL7 / FHIR) / results to RIS/HIS on")
