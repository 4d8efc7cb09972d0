"""Webhook signatures: HMAC-SHA256 over ``"{timestamp}." + raw body``, sent as
``X-MDD-Signature: t=<unix seconds>,v1=<hex>`` (the scheme Stripe and GitHub use).

Providers verify with ``verify_signature`` (or the standalone copy in docs/providers.md): the
timestamp bounds replays, ``hmac.compare_digest`` keeps the comparison constant-time, and several
``v1`` values are accepted so that a secret can be rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-MDD-Signature"
DELIVERY_HEADER = "X-MDD-Delivery"
EVENT_HEADER = "X-MDD-Event"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match the body."""


def compute_signature(secret: str, body: bytes, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``"{timestamp}.".encode() + body`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-MDD-Signature`` value for ``body`` signed now (or at ``timestamp``)."""
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},v1={compute_signature(secret, body, moment)}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a webhook: ``header`` must sign exactly ``body`` with ``secret`` within ``tolerance`` seconds.

    Returns the signed timestamp; raises ``SignatureError`` saying what is wrong.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("Encabezado de firma mal formado / malformed signature header")
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise SignatureError("Firma fuera de tiempo / signature timestamp outside the tolerance")
    expected = compute_signature(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("La firma no corresponde al cuerpo / signature does not match the body")
    return timestamp
