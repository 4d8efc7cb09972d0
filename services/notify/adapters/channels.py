"""Delivery through apprise, HL7 MLLP or FHIR: every channel is a URL.

A recipient's channel is written either as an apprise URL (``mailto://``, ``twilio://``,
``twiliogws://``, ``jsons://``, ``tgram://``, ``slack://``…) or as a shorthand: an e-mail address
goes through the SMTP server of the settings, a phone number (``+52…``) through the rules file's
SMS gateway. A RIS is ``mllp://host:port`` (HL7 v2.5 ORU^R01) and a HIS's FHIR server
``fhir+https://host/base`` (a transaction Bundle). Each channel has a kind (email, sms, webhook,
chat, hl7, fhir) that picks its message, and a target that names it in logs and events without
its secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode, urlsplit

import apprise

from shared.mail import send_mail_url
from shared.reliability.errors import Dependency, DependencyUnavailable, unavailable_dependency
from shared.settings import Settings
from services.notify.adapters import fhir_server, mllp, twilio_gateway

ChannelKind = Literal["email", "sms", "webhook", "chat", "hl7", "fhir"]
CHANNEL_KINDS: tuple[ChannelKind, ...] = ("email", "sms", "webhook", "chat", "hl7", "fhir")
#: Kinds whose message is a structured result for a hospital system, not a rendered template.
RESULT_KINDS: frozenset[str] = frozenset({"hl7", "fhir"})
HL7_SCHEMES = frozenset({"mllp"})
FHIR_SCHEMES = frozenset({"fhir+http", "fhir+https"})
EMAIL_SCHEMES = frozenset({"mailto", "mailtos"})
WEBHOOK_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})
# Apprise plugins that deliver to a phone number: they get the short SMS message, never identities.
SMS_SCHEMES = frozenset(
    {
        *twilio_gateway.SCHEMES, "twilio", "sns", "d7sms", "clicksend", "bulksms", "bulkvs", "plivo", "sinch", "vonage",
        "nexmo", "msg91", "kavenegar", "msgbird", "seven", "atalk", "smseagle", "smseagles", "httpsms", "smsmgr",
        "smsmanager", "telnyx", "telesign", "infobip", "octopush", "kaleyra", "klr", "46elks", "elks", "smsc",
        "serwersms", "smstunnel", "voipms", "exotel", "notifyre", "ringc", "mobilemessage", "mobilemsg", "freemobile",
        "whatsapp", "awswhatsapp",
    }
)
EMAIL = re.compile(r"^[^@\s/:]+@[^@\s/:]+\.[^@\s/:]+$")
PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")


class DeliveryError(RuntimeError):
    """The channel did not accept the message."""


@dataclass(frozen=True)
class Channel:
    """One way to reach a recipient: its kind, its apprise URL (secret) and a printable target."""

    kind: ChannelKind
    url: str
    target: str


def email_url(settings: Settings, recipient: str) -> str:
    """The apprise URL that sends e-mail to ``recipient`` through the configured SMTP server."""
    query = urlencode({"from": settings.smtp_from, "to": recipient, "mode": "insecure", "user": "", "pass": ""})
    return f"mailto://{settings.smtp_host}:{settings.smtp_port}?{query}"


def kind_of(url: str) -> ChannelKind:
    """The kind of an apprise URL, by its scheme."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in HL7_SCHEMES:
        return "hl7"
    if scheme in FHIR_SCHEMES:
        return "fhir"
    if scheme in EMAIL_SCHEMES:
        return "email"
    if scheme in SMS_SCHEMES:
        return "sms"
    if scheme in WEBHOOK_SCHEMES:
        return "webhook"
    return "chat"


def _printable(url: str) -> str:
    """The URL without credentials or query: what logs and events may show."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is not None and plugin.secure_protocol not in twilio_gateway.SCHEMES and plugin.protocol not in twilio_gateway.SCHEMES:
        return plugin.url(privacy=True).split("?", 1)[0]
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _check_url(url: str) -> None:
    """Raise ``ValueError`` unless apprise can build a notifier from ``url``."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in twilio_gateway.SCHEMES and not twilio_gateway.is_valid_url(url):
        raise ValueError(
            f"URL de pasarela SMS inválida / invalid SMS gateway URL: {scheme}://SID:TOKEN@host/+REMITENTE/+DESTINO"
        )
    if apprise.Apprise.instantiate(url) is None:
        raise ValueError(f"URL de apprise inválida / invalid apprise URL: {scheme}://…")


def resolve_channel(spec: str, settings: Settings, sms_gateway: str | None) -> Channel:
    """Turn a channel as written in the rules (URL, e-mail or phone) into a ``Channel``.

    Raises ``ValueError`` with a Spanish / English message when it cannot be used.
    """
    spec = spec.strip()
    if "://" in spec and kind_of(spec) == "hl7":
        host, port = mllp.endpoint(spec)
        return Channel("hl7", spec, f"mllp://{host}:{port}")
    if "://" in spec and kind_of(spec) == "fhir":
        base = urlsplit(fhir_server.base_url(spec))
        return Channel("fhir", spec, f"{base.scheme}://{base.hostname}{f':{base.port}' if base.port else ''}{base.path}")
    if "://" in spec:
        _check_url(spec)
        return Channel(kind_of(spec), spec, _printable(spec))
    if PHONE.match(spec):
        if not sms_gateway:
            raise ValueError(
                f"Teléfono {spec} sin pasarela: defina sms_gateway en el archivo de reglas / "
                "phone number without a gateway: set sms_gateway in the rules file"
            )
        url = f"{sms_gateway.strip().rstrip('/')}/{spec}"
        if kind_of(url) != "sms":
            raise ValueError("sms_gateway debe ser una URL de SMS de apprise / sms_gateway must be an apprise SMS URL")
        _check_url(url)
        return Channel("sms", url, spec)
    if EMAIL.match(spec):
        return Channel("email", email_url(settings, spec), spec)
    raise ValueError(
        f"Canal no reconocido / unrecognised channel '{spec}': use una URL de apprise, un correo o un teléfono +52… "
        "/ use an apprise URL, an e-mail address or a +52… phone number"
    )


#: Channels where a message sent twice is recognised as one: e-mail by its Message-ID, webhooks by the
#: ``Idempotency-Key`` header, HL7 by its MSH-10 control id, FHIR by its conditional creates. A send
#: interrupted on any other channel cannot be told apart from one that reached the person, so it is
#: reported uncertain instead of being sent again.
DEDUPLICATING_KINDS: frozenset[ChannelKind] = frozenset({"email", "webhook", "hl7", "fhir"})
# What apprise reports when the far end is down or overloaded rather than refusing the message.
_UNAVAILABLE = re.compile(
    r"connection|unreachable|inalcanzable|timed? ?out|timeout|temporar|unavailable|\b(?:429|5[0-9][0-9])\b", re.IGNORECASE
)
_DEPENDENCY_OF_KIND = {
    "email": Dependency.SMTP, "sms": Dependency.SMS, "webhook": Dependency.WEBHOOK, "chat": Dependency.WEBHOOK,
    "hl7": Dependency.WEBHOOK, "fhir": Dependency.WEBHOOK,
}


def with_idempotency_key(url: str, key: str) -> str:
    """An apprise webhook URL that also sends ``Idempotency-Key: key`` (apprise's ``+Header`` parameters)."""
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode({"+Idempotency-Key": key})]))
    return parts._replace(query=query).geturl()


def _send_result(channel: Channel, body: str) -> None:
    """The HL7 message to an MLLP channel, the Bundle JSON to a FHIR one; a RIS that is down is waited for."""
    try:
        mllp.send_hl7(channel.url, body) if channel.kind == "hl7" else fhir_server.post_bundle(channel.url, body)
    except (mllp.MllpError, fhir_server.FhirServerError) as exc:
        if unavailable_dependency(exc) is not None or _UNAVAILABLE.search(str(exc)):
            raise DependencyUnavailable(_DEPENDENCY_OF_KIND[channel.kind], str(exc)) from exc
        raise DeliveryError(str(exc)) from exc


def send(channel: Channel, subject: str, body: str, message_id: str) -> None:
    """Send one message through one channel under ``message_id``.

    ``body`` is the HL7 message for an MLLP channel, the Bundle JSON for a FHIR one. Raises
    ``DependencyUnavailable`` when the channel's server is down or overloaded (the message waits
    for it) and ``DeliveryError`` with the channel's reason when it refuses the message.
    """
    if channel.kind in RESULT_KINDS:
        _send_result(channel, body)
        return
    if channel.url.split("://", 1)[0].lower() in EMAIL_SCHEMES:
        send_mail_url(channel.url, subject, body, message_id)
        return
    url = with_idempotency_key(channel.url, message_id) if channel.kind == "webhook" else channel.url
    sender = apprise.Apprise()
    if not sender.add(url):
        raise DeliveryError("URL de canal inválida / invalid channel URL")
    result = sender.notify(title=subject, body=body)
    if result:
        return
    reasons = "; ".join(dict.fromkeys(e.message for e in result.logs() if e.level in ("WARNING", "ERROR")))
    message = "El canal rechazó el mensaje / channel refused the message" + (f": {reasons}" if reasons else "")
    if _UNAVAILABLE.search(reasons):
        raise DependencyUnavailable(_DEPENDENCY_OF_KIND[channel.kind], message)
    raise DeliveryError(message)
