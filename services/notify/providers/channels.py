"""The two ways an offer reaches a provider: a signed HTTPS webhook, or the provider's own topic."""

from __future__ import annotations

from typing import Protocol

import httpx

from shared import __version__
from shared.bus import Bus
from shared.events import ProviderStudyOffer
from shared.reliability.errors import Dependency, DependencyUnavailable
from shared.topics import provider_topic
from services.notify.providers.registry import Provider
from services.notify.providers.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)


class ProviderDeliveryError(RuntimeError):
    """The provider's endpoint did not accept the offer."""


class Channel(Protocol):
    """Sends one offer to one provider; raises when it was not accepted."""

    name: str

    async def send(self, provider: Provider, offer: ProviderStudyOffer) -> None: ...


class WebhookChannel:
    """POSTs the offer as JSON, signed with the provider's secret; any 2xx answer accepts it.

    Redirects are not followed, so a signed body never goes anywhere but the registered URL. No
    answer, 429 or 5xx mean the provider is down (the offer waits for it); another 4xx is a refusal.
    """

    name = "webhook"

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds

    async def send(self, provider: Provider, offer: ProviderStudyOffer) -> None:
        """POST ``offer`` to ``provider.webhook_url`` (signed at the moment of this try)."""
        if not provider.webhook_url or not provider.webhook_secret:
            raise ProviderDeliveryError("Proveedor sin webhook / provider has no webhook")
        body = offer.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"mexican-deep-dicom/{__version__}",
            SIGNATURE_HEADER: signature_header(provider.webhook_secret, body),
            DELIVERY_HEADER: str(offer.delivery_id),
            EVENT_HEADER: offer.event_type,
        }
        try:
            async with httpx.AsyncClient(timeout=self.timeout_seconds, follow_redirects=False) as client:
                response = await client.post(provider.webhook_url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise DependencyUnavailable(Dependency.WEBHOOK, f"Proveedor inalcanzable / provider unreachable: {exc!r}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise DependencyUnavailable(Dependency.WEBHOOK, f"HTTP {response.status_code}: {response.text[:200]}")
        if not response.is_success:
            raise ProviderDeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")


class TopicChannel:
    """Publishes the offer to ``{prefix}provider.{provider_id}``, keyed by the offered study UID."""

    name = "kafka"

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def send(self, provider: Provider, offer: ProviderStudyOffer) -> None:
        """Publish ``offer`` on the provider's own topic (returns once the broker accepted it)."""
        await self.bus.publish_to(provider_topic(self.bus.settings.topic_prefix, provider.provider_id), offer)
