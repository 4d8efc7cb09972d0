"""E-mail with a Message-ID of our choosing, through the standard library's SMTP client.

A message is sent again, after a crash mid-send, under the same Message-ID: receiving servers and
mail clients drop the second copy. Apprise parses the ``mailto://`` / ``mailtos://`` URLs the rules
use (host, port, TLS mode, credentials, sender, recipients); the sending itself is ``smtplib``,
because apprise makes a fresh Message-ID for every send. An SMTP server that cannot be reached, or
answers 4xx, raises :class:`~shared.reliability.errors.DependencyUnavailable`; a 5xx refusal is
deterministic and raised as it is.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from uuid import NAMESPACE_URL, uuid5

from shared.reliability.errors import Dependency, DependencyUnavailable, unavailable_dependency

SMTP_TIMEOUT_SECONDS = 15.0


def message_id_for(key: str, domain: str = "mdd.local") -> str:
    """The Message-ID of the message delivered under ``key`` (the same on every send of it)."""
    return f"<{uuid5(NAMESPACE_URL, f'mdd-mail:{key}')}@{domain}>"


def send_mail(
    *,
    host: str,
    port: int,
    from_addr: str,
    to_addrs: list[str],
    subject: str,
    body: str,
    message_id: str,
    secure_mode: str = "insecure",
    user: str = "",
    password: str = "",
    from_name: str = "",
    timeout: float = SMTP_TIMEOUT_SECONDS,
) -> None:
    """Send one plain-text message; ``secure_mode`` is ``insecure``, ``starttls`` or ``ssl``."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = formataddr((from_name, from_addr)) if from_name else from_addr
    message["To"] = ", ".join(to_addrs)
    message["Message-ID"] = message_id
    message["Date"] = formatdate(usegmt=True)
    message.set_content(body)
    try:
        client_class = smtplib.SMTP_SSL if secure_mode == "ssl" else smtplib.SMTP
        with client_class(host, port, timeout=timeout) as client:
            if secure_mode == "starttls":
                client.starttls(context=ssl.create_default_context())
            if user:
                client.login(user, password)
            client.send_message(message)
    except Exception as exc:
        if unavailable_dependency(exc) is not None:
            raise DependencyUnavailable(Dependency.SMTP, f"SMTP {host}:{port} no disponible / unavailable: {exc!r}") from exc
        raise


def send_mail_url(url: str, subject: str, body: str, message_id: str) -> None:
    """Send through a ``mailto://`` / ``mailtos://`` apprise URL; raises ``ValueError`` for another URL."""
    import apprise
    from apprise.plugins.email.base import NotifyEmail

    plugin = apprise.Apprise.instantiate(url)
    if not isinstance(plugin, NotifyEmail):
        raise ValueError("No es una URL de correo / not an e-mail URL")
    from_name, from_addr = plugin.from_addr
    send_mail(
        host=plugin.smtp_host,
        port=int(plugin.port or (465 if plugin.secure_mode == "ssl" else 25)),
        from_addr=from_addr,
        from_name=from_name or "",
        to_addrs=[address for _, address in plugin.targets],
        subject=subject,
        body=body,
        message_id=message_id,
        secure_mode=str(plugin.secure_mode or "starttls") if plugin.secure else "insecure",
        user=plugin.user or "",
        password=plugin.password or "",
        timeout=float(getattr(plugin, "socket_connect_timeout", SMTP_TIMEOUT_SECONDS) or SMTP_TIMEOUT_SECONDS),
    )
