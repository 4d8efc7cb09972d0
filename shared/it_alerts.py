"""Alerts to the hospital's IT staff on a channel of their own (``MDD_IT_ALERT_CHANNELS``).

For what must reach a person even when the notify service is the thing that is broken: a RED
result that did not reach its people in time (sent by the status API's watchdog). Each channel is
an e-mail address (through ``MDD_SMTP_HOST``) or an apprise URL (Telegram, Slack, a webhook, another
SMTP server…). An alert counts as delivered when at least one channel took it; when none did, the
caller retries it later.
"""

from __future__ import annotations

import logging
import re

import apprise

from shared.mail import message_id_for, send_mail, send_mail_url
from shared.reliability.errors import Dependency, DependencyUnavailable, describe
from shared.settings import Settings

log = logging.getLogger("mdd.it_alerts")
_EMAIL = re.compile(r"^[^@\s/:]+@[^@\s/:]+\.[^@\s/:]+$")


class NoItChannel(RuntimeError):
    """``MDD_IT_ALERT_CHANNELS`` is empty: the alert can only be logged."""


def _send_one(settings: Settings, channel: str, subject: str, body: str, message_id: str) -> None:
    if _EMAIL.match(channel):
        send_mail(host=settings.smtp_host, port=settings.smtp_port, from_addr=settings.smtp_from, to_addrs=[channel],
                  subject=subject, body=body, message_id=message_id)
    elif channel.split("://", 1)[0].lower() in ("mailto", "mailtos"):
        send_mail_url(channel, subject, body, message_id)
    else:
        sender = apprise.Apprise()
        if not sender.add(channel) or not sender.notify(title=subject, body=body):
            raise RuntimeError("El canal de TI rechazó la alerta / the IT channel refused the alert")


def send_it_alert(settings: Settings, key: str, subject: str, body: str) -> list[str]:
    """Send one alert (identified by ``key``, so a resend is recognised) to every IT channel.

    Returns the channels that failed. Raises ``NoItChannel`` when none is configured and
    ``DependencyUnavailable`` when every channel failed (try again later).
    """
    channels = list(dict.fromkeys(settings.it_alert_channels))
    if not channels:
        raise NoItChannel("Sin MDD_IT_ALERT_CHANNELS: la alerta solo queda en la bitácora / no IT channel configured")
    domain = settings.smtp_from.rpartition("@")[2] or "mdd.local"
    failed: list[str] = []
    for channel in channels:
        try:
            _send_one(settings, channel, subject, body, message_id_for(f"it-alert:{key}", domain))
        except Exception as exc:
            log.warning("Alerta a TI no enviada por un canal / IT alert not sent on one channel: %s", describe(exc))
            failed.append(channel.split("://", 1)[0] if "://" in channel else channel)
    if len(failed) == len(channels):
        raise DependencyUnavailable(Dependency.NETWORK, "Ningún canal de TI aceptó la alerta / no IT channel took the alert")
    return failed
