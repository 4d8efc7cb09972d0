"""SMS through any gateway that speaks Twilio's Messages API, as an apprise plugin.

Apprise's own ``twilio://`` always posts to Twilio's host. Many SMS gateways (several Mexican
ones among them) accept the same call on their own host, so this plugin adds
``twiliogws://`` (HTTPS) and ``twiliogw://`` (plain HTTP, for a gateway on the local network):

    twiliogws://{AccountSid}:{AuthToken}@{host}[:{port}][/{prefix}]/{FromPhone}/{ToPhone}[/{ToPhone}...]

Each recipient gets ``POST {prefix}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with the
form fields ``To``, ``From`` and ``Body`` and HTTP basic authentication (sid, token), as Twilio
expects. Only the body is sent: SMS has no subject.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote

import httpx
from apprise.decorators import notify

# Under apprise's logger, so that apprise reports these lines with the result of the call.
log = logging.getLogger("apprise.custom.twiliogw")

SCHEMES = ("twiliogw", "twiliogws")
PHONE = re.compile(r"^\+?[0-9]{6,15}$")
TIMEOUT_SECONDS = 15.0


def _split_path(fullpath: str) -> tuple[str, list[str]]:
    """The URL prefix (segments before the first phone) and the phone numbers after it."""
    segments = [unquote(segment) for segment in fullpath.split("/") if segment]
    first_phone = next((i for i, segment in enumerate(segments) if PHONE.match(segment)), len(segments))
    return "/".join(segments[:first_phone]), segments[first_phone:]


def messages_endpoint(meta: dict[str, Any]) -> str:
    """The Messages API address on the gateway named by the URL."""
    scheme = "https" if meta["schema"] == "twiliogws" else "http"
    port = f":{meta['port']}" if meta.get("port") else ""
    prefix, _ = _split_path(meta.get("fullpath") or "")
    base = f"{scheme}://{meta['host']}{port}" + (f"/{prefix}" if prefix else "")
    return f"{base}/2010-04-01/Accounts/{unquote(meta['user'])}/Messages.json"


def _send_sms(body: str, title: str, notify_type: str, meta: dict[str, Any], *args: Any, **kwargs: Any) -> bool:
    """Apprise entry point: one Messages API call per recipient; False when any is refused."""
    sid, token = unquote(meta.get("user") or ""), unquote(meta.get("password") or "")
    _, phones = _split_path(meta.get("fullpath") or "")
    if not (meta.get("host") and sid and token and len(phones) >= 2):
        log.warning("URL de SMS incompleta / incomplete SMS URL: se requieren sid, token, remitente y destino")
        return False
    sender, recipients = phones[0], phones[1:]
    endpoint = messages_endpoint(meta)
    delivered = True
    with httpx.Client(timeout=TIMEOUT_SECONDS, verify=bool(meta.get("verify", True))) as client:
        for recipient in recipients:
            try:
                response = client.post(endpoint, data={"To": recipient, "From": sender, "Body": body}, auth=(sid, token))
            except httpx.HTTPError as exc:
                log.warning("Pasarela SMS inalcanzable / SMS gateway unreachable: %r", exc)
                delivered = False
                continue
            if not response.is_success:
                log.warning("Pasarela SMS rechazó / SMS gateway refused (%d): %s", response.status_code, response.text[:300])
                delivered = False
    return delivered


for _scheme in SCHEMES:
    notify(on=_scheme, name="Pasarela SMS compatible con Twilio / Twilio-compatible SMS gateway")(_send_sms)


def is_valid_url(meta_url: str) -> bool:
    """True when a gateway URL names a host, credentials, a sender and at least one recipient."""
    match = re.match(r"^(twiliogws?)://([^:@/]+):([^@/]+)@([^/]+)(/.*)?$", meta_url)
    if not match:
        return False
    _, phones = _split_path(match.group(5) or "")
    return len(phones) >= 2
