"""FHIR over HTTP: POST a transaction Bundle to the HIS's FHIR server base, accept only a 2xx answer."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import httpx

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
FHIR_JSON = "application/fhir+json"


class FhirServerError(RuntimeError):
    """The FHIR server could not be reached or did not accept the Bundle."""


def base_url(url: str) -> str:
    """The HTTP(S) base of a ``fhir+http(s)://host/base`` channel URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("fhir+http", "fhir+https") or not parts.hostname:
        raise ValueError(f"URL FHIR inválida / invalid FHIR URL (fhir+https://host/base): {url}")
    return urlunsplit((scheme.removeprefix("fhir+"), parts.netloc, parts.path.rstrip("/"), parts.query, ""))


def post_bundle(url: str, bundle_json: str) -> int:
    """POST the Bundle to the server's base (a transaction); returns the HTTP status, raises unless 2xx."""
    try:
        answer = httpx.post(
            base_url(url) + "/", content=bundle_json.encode(), timeout=TIMEOUT,
            headers={"Content-Type": f"{FHIR_JSON}; charset=utf-8", "Accept": FHIR_JSON},
        )
    except httpx.HTTPError as exc:
        raise FhirServerError(f"Servidor FHIR no disponible / FHIR server unreachable: {exc!r}") from exc
    if not 200 <= answer.status_code < 300:
        raise FhirServerError(f"El servidor FHIR respondió / FHIR server answered {answer.status_code}: {answer.text[:300]}")
    return answer.status_code
