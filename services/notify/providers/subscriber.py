"""Provider subscriber: a completed study is offered to every active provider of its hospital.

Per (study, provider, channel) the delivery is claimed before it is sent and recorded after, so a
redelivered ``study.completed`` sends nothing twice. A channel that keeps failing is retried with
exponential backoff, then its delivery is marked failed and dead-lettered (with the original
event, so re-driving it retries only what failed); the other providers are not held up. An
instance that cannot be de-identified safely fails that provider's delivery the same way.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from shared.db import init_db
from shared.events import DeadLetter, ProviderStudyOffer, StudyCompleted
from shared.runtime import ServiceContext
from shared.topics import topic_for
from services.notify.providers import deliveries
from services.notify.providers.channels import Channel, TopicChannel, WebhookChannel
from services.notify.providers.deidentify import DeidentificationError
from services.notify.providers.offers import SERVICE, build_offer
from services.notify.providers.registry import Provider, init_registry, providers_for_hospital
from services.notify.providers.tables import DeidStudyMap, ProviderDelivery

log = logging.getLogger("mdd.notify.providers")
GROUP = "notify-providers"


class ProviderDispatcher:
    """Offers completed studies to providers, once per study, provider and channel."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.webhook = WebhookChannel(ctx.settings.provider_webhook_timeout_seconds)
        self.topic = TopicChannel(ctx.bus)

    def channels_of(self, provider: Provider) -> list[Channel]:
        """The channels a provider receives on."""
        channels: list[Channel] = []
        if provider.webhook_url:
            channels.append(self.webhook)
        if provider.kafka:
            channels.append(self.topic)
        return channels

    async def on_completed(self, event: StudyCompleted) -> None:
        """Offer the study to each active provider that serves its hospital."""
        providers = await asyncio.to_thread(providers_for_hospital, self.ctx.engine, event.hospital_id)
        for provider in providers:
            await self.offer_to(provider, event)

    async def offer_to(self, provider: Provider, event: StudyCompleted) -> None:
        """Build the offer (only when some channel still needs it) and send it on each channel."""
        engine = self.ctx.engine
        pending = [
            channel
            for channel in self.channels_of(provider)
            if await asyncio.to_thread(
                deliveries.needs_sending,
                engine,
                deliveries.delivery_key(event.study_uid, provider.provider_id, channel.name),
            )
        ]
        if not pending:
            log.info("Estudio ya ofrecido / study already offered to %s", provider.provider_id)
            return
        offer_id = deliveries.delivery_id(event.study_uid, provider.provider_id, provider.deid_seed)
        try:
            offer = await asyncio.to_thread(build_offer, self.ctx, provider, event)
        except DeidentificationError as exc:
            for channel in pending:
                if await asyncio.to_thread(self._claim, event, provider, channel, offer_id):
                    await self._failed(provider, channel, event, 0, str(exc))
            return
        for channel in pending:
            if not await asyncio.to_thread(self._claim, event, provider, channel, offer_id):
                continue
            attempts, error = await self._send_with_retries(channel, provider, offer)
            key = deliveries.delivery_key(event.study_uid, provider.provider_id, channel.name)
            if error is None:
                await asyncio.to_thread(deliveries.finish, engine, key, "sent", attempts, "")
                log.info("Estudio ofrecido / study offered to %s by %s", provider.provider_id, channel.name)
            else:
                await self._failed(provider, channel, event, attempts, error)

    def _claim(self, event: StudyCompleted, provider: Provider, channel: Channel, offer_id: UUID) -> bool:
        return deliveries.claim(
            self.ctx.engine, event.study_uid, provider.provider_id, channel.name, offer_id
        )

    async def _send_with_retries(
        self, channel: Channel, provider: Provider, offer: ProviderStudyOffer
    ) -> tuple[int, str | None]:
        settings = self.ctx.settings
        attempts = settings.provider_delivery_attempts
        for attempt in range(1, attempts + 1):
            try:
                await channel.send(provider, offer)
                return attempt, None
            except Exception as exc:  # any failure of the provider's side is retried, then dead-lettered
                log.warning(
                    "Entrega a %s por %s falló %d/%d / delivery failed: %r",
                    provider.provider_id,
                    channel.name,
                    attempt,
                    attempts,
                    exc,
                )
                if attempt == attempts:
                    return attempt, f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(settings.provider_retry_backoff_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _failed(
        self, provider: Provider, channel: Channel, event: StudyCompleted, attempts: int, error: str
    ) -> None:
        key = deliveries.delivery_key(event.study_uid, provider.provider_id, channel.name)
        await asyncio.to_thread(deliveries.finish, self.ctx.engine, key, "failed", attempts, error)
        log.error(
            "Entrega a %s por %s enviada a DLQ / dead-lettered: %s", provider.provider_id, channel.name, error
        )
        await self.ctx.bus.dead_letter(
            DeadLetter(
                stage=f"{GROUP}:{provider.provider_id}:{channel.name}",
                source_topic=topic_for(StudyCompleted, self.ctx.settings.topic_prefix),
                error=error,
                attempts=attempts,
                study_uid=event.study_uid,
                payload=event.model_dump_json(),
            )
        )


def register_providers(ctx: ServiceContext) -> ProviderDispatcher:
    """Create the provider tables and subscribe the dispatcher to ``study.completed``."""
    init_registry(ctx.engine)
    init_db(ctx.engine, [ProviderDelivery, DeidStudyMap])
    dispatcher = ProviderDispatcher(ctx)
    ctx.bus.subscribe(StudyCompleted, dispatcher.on_completed, service=SERVICE, group=GROUP)
    return dispatcher
