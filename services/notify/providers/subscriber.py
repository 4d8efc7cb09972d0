"""Provider subscriber: a completed study is offered to every active provider of its hospital.

Per (study, provider, channel) the offer is recorded as an intent, then claimed and sent
(:mod:`services.notify.providers.deliveries`); a redelivered ``study.completed`` finds the intents and
sends nothing twice. A provider that is down holds up only its own offers: they wait, without
spending attempts, and the sweep sends them when it answers again. A provider that keeps refusing
(4xx), or an instance that cannot be de-identified safely, ends that delivery ``failed`` with a dead
letter carrying the original event (replaying it retries only what failed).
"""

from __future__ import annotations

import asyncio
import logging
from uuid import uuid4

from sqlmodel import Session

from shared.db import init_db
from shared.events import DeadLetter, ProviderStudyOffer, StudyCompleted
from shared.reliability.claims import FAILED, SENT, ClaimLedger
from shared.reliability.deadletters import record_dead_letter
from shared.it_alerts import NoItChannel, send_it_alert
from shared.reliability.errors import DependencyUnavailable, describe, unavailable_dependency
from shared.reliability.health import HEALTH
from shared.reliability.periodic import PeriodicTask
from shared.reliability.retry import dependency_backoff, note_back_for, note_outage, until_available
from shared.runtime import ServiceContext
from shared.topics import topic_for
from services.notify.providers import deliveries
from services.notify.providers.channels import Channel, TopicChannel, WebhookChannel
from services.notify.providers.deidentify import DeidentificationError
from services.notify.providers.offers import SERVICE, build_offer
from services.notify.providers.registry import Provider, ProviderError, get_provider, init_registry, providers_for_hospital
from services.notify.providers.tables import DeidStudyMap, ProviderDelivery

log = logging.getLogger("mdd.notify.providers")
GROUP = "notify-providers"
SWEEP_SECONDS = 1.0
#: A send takes at most the webhook timeout; a claim not settled well after that belonged to a process that died.
CLAIM_LEASE_SECONDS = 120.0


class ProviderDispatcher:
    """Offers completed studies to providers, once per study, provider and channel."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.webhook = WebhookChannel(ctx.settings.provider_webhook_timeout_seconds)
        self.topic = TopicChannel(ctx.bus)
        lease = max(CLAIM_LEASE_SECONDS, 3 * ctx.settings.provider_webhook_timeout_seconds)
        self.claims = ClaimLedger(ctx.engine, ProviderDelivery, "delivery_key", uuid4().hex, lease)
        self.sweeper = PeriodicTask("notify.providers.sweep", self.sweep, SWEEP_SECONDS)

    def channels_of(self, provider: Provider) -> list[Channel]:
        """The channels a provider receives on."""
        channels: list[Channel] = []
        if provider.webhook_url:
            channels.append(self.webhook)
        if provider.kafka:
            channels.append(self.topic)
        return channels

    def _channel(self, name: str) -> Channel:
        return self.webhook if name == self.webhook.name else self.topic

    async def on_completed(self, event: StudyCompleted) -> None:
        """Record the offer to each active provider of the study's hospital and try each at once."""
        providers = await until_available(
            lambda: asyncio.to_thread(providers_for_hospital, self.ctx.engine, event.hospital_id), GROUP
        )
        keys: list[str] = []
        for provider in providers:
            offer_id = deliveries.delivery_id(event.hospital_id, event.study_uid, provider.provider_id, provider.deid_seed)
            names = [channel.name for channel in self.channels_of(provider)]
            keys += await until_available(lambda provider=provider, offer_id=offer_id, names=names: asyncio.to_thread(
                deliveries.record_intents, self.ctx.engine, event, provider.provider_id, offer_id, names, True), GROUP)
        for key in keys:
            await self.attempt(key)

    async def attempt(self, key: str) -> None:
        """Claim one offer and send it once; postpone or settle it by how that went."""
        claim = await asyncio.to_thread(self.claims.claim, key)
        if claim is None:
            return
        record = await asyncio.to_thread(deliveries.load, self.ctx.engine, key)
        event = StudyCompleted.model_validate_json(record.payload)
        try:
            provider: Provider | None = await asyncio.to_thread(get_provider, self.ctx.engine, record.provider_id)
        except ProviderError:
            provider = None
        if provider is None or not provider.active:
            await self._settle(record, FAILED, claim.attempts, "Proveedor inactivo o inexistente / provider inactive or unknown")
            return
        try:
            offer: ProviderStudyOffer = await asyncio.to_thread(build_offer, self.ctx, provider, event)
            await self._channel(record.channel).send(provider, offer)
        except DeidentificationError as exc:
            # Held, not sent: the dead letter keeps it for IT (mdd dlq), and IT is told once.
            await self._settle(record, FAILED, claim.attempts, str(exc))
            await asyncio.to_thread(self._tell_it_held, record, str(exc))
            return
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is not None:
                note_outage(HEALTH, dependency, f"{GROUP}:{record.provider_id}", exc)
                delay = dependency_backoff().delay(claim.retries + 1)
                await asyncio.to_thread(self.claims.postpone, key, delay, describe(exc), False)
                asyncio.get_running_loop().call_later(delay, self.sweeper.wake)
                return
            attempts = claim.attempts + 1
            limit = self.ctx.settings.provider_delivery_attempts
            log.warning("Entrega a %s por %s falló %d/%d / delivery failed: %s", record.provider_id, record.channel, attempts, limit, describe(exc))
            if attempts >= limit:
                await self._settle(record, FAILED, attempts, describe(exc))
                return
            delay = self.ctx.settings.provider_retry_backoff_seconds * 2 ** (attempts - 1)
            await asyncio.to_thread(self.claims.postpone, key, delay, describe(exc), True)
            asyncio.get_running_loop().call_later(delay, self.sweeper.wake)
            return
        note_back_for(f"{GROUP}:{record.provider_id}")
        await self._settle(record, SENT, claim.attempts + 1, "")
        log.info("Estudio ofrecido / study offered to %s by %s", record.provider_id, record.channel)

    def _settle_sync(self, record: ProviderDelivery, status: str, attempts: int, detail: str) -> list[str]:
        with Session(self.ctx.engine) as session:
            if not self.claims.settle(record.delivery_key, status, detail, attempts, session=session):
                session.rollback()
                return []
            ids: list[str] = []
            if status == FAILED:
                ids = record_dead_letter(session, DeadLetter(
                    stage=f"{GROUP}:{record.provider_id}:{record.channel}",
                    source_topic=topic_for(StudyCompleted, self.ctx.settings.topic_prefix),
                    error=detail, attempts=attempts, study_uid=record.study_uid,
                    hospital_id=StudyCompleted.model_validate_json(record.payload).hospital_id, payload=record.payload,
                ), self.ctx.settings.topic_prefix)
            session.commit()
            return ids

    def _tell_it_held(self, record: ProviderDelivery, reason: str) -> None:
        subject = f"Estudio retenido, no enviado a {record.provider_id} / study held, not sent to {record.provider_id}"
        body = (
            f"Estudio / study {record.study_uid} no se envió al proveedor "
            f"{record.provider_id}: {reason}.\nQueda en la cola de mensajes muertos: revíselo y decida con "
            "`mdd dlq list` / `mdd dlq replay` o `mdd dlq discard` / it is held in the dead-letter queue."
        )
        try:
            send_it_alert(self.ctx.settings, f"deid-held:{record.delivery_key}", subject, body)
        except NoItChannel:
            log.error("%s (sin MDD_IT_ALERT_CHANNELS / no IT channel): %s", subject, reason)
        except DependencyUnavailable as exc:
            log.error("%s; la alerta a TI no salió / the IT alert did not leave: %s", subject, describe(exc))

    async def _settle(self, record: ProviderDelivery, status: str, attempts: int, detail: str) -> None:
        ids = await until_available(lambda: asyncio.to_thread(self._settle_sync, record, status, attempts, detail), GROUP)
        if status == FAILED:
            log.error("Entrega a %s por %s enviada a DLQ / dead-lettered: %s", record.provider_id, record.channel, detail)
        await until_available(lambda: self.ctx.bus.outbox.flush(ids), GROUP)

    async def sweep(self, limit: int = 50) -> int:
        """Try every offer that is due (postponed ones, and claims whose sender died); how many were tried."""
        keys = await asyncio.to_thread(self.claims.due, limit)
        for key in keys:
            await self.attempt(key)
        return len(keys)

    async def start(self) -> None:
        """Start the sweep."""
        await self.sweeper.start()

    async def stop(self) -> None:
        """Stop the sweep."""
        await self.sweeper.stop()


def register_providers(ctx: ServiceContext) -> ProviderDispatcher:
    """Create the provider tables and subscribe the dispatcher to ``study.completed``; the dispatcher runs the sweep."""
    init_registry(ctx.engine)
    init_db(ctx.engine, [ProviderDelivery, DeidStudyMap])
    dispatcher = ProviderDispatcher(ctx)
    ctx.bus.subscribe(StudyCompleted, dispatcher.on_completed, service=SERVICE, group=GROUP)
    return dispatcher
