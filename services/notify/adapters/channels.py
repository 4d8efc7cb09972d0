"""Delivery through apprise: e-mail (SMTP) today; any apprise URL works the same way."""

from __future__ import annotations

from urllib.parse import urlencode

import apprise

from shared.settings import Settings


class DeliveryError(RuntimeError):
    """The channel did not accept the message."""


def email_url(settings: Settings, recipient: str) -> str:
    """The apprise URL that sends e-mail to ``recipient`` through the configured SMTP server."""
    query = urlencode({"from": settings.smtp_from, "to": recipient, "mode": "insecure", "user": "", "pass": ""})
    return f"mailto://{settings.smtp_host}:{settings.smtp_port}?{query}"


def send(url: str, subject: str, body: str) -> None:
    """Send one message to one apprise URL; raises ``DeliveryError`` when it is not accepted."""
    sender = apprise.Apprise()
    if not sender.add(url):
        raise DeliveryError("URL de canal inválida / invalid channel URL")
    if not sender.notify(title=subject, body=body):
        raise DeliveryError("El canal rechazó el mensaje / channel refused the message")
