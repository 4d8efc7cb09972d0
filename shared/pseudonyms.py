"""Pseudonymous patient keys: a keyed HMAC of hospital and PatientID, with a per-deployment secret.

An unkeyed hash of a short record number is reversed by trying every number; an HMAC is not without
the secret. ``MDD_PATIENT_KEY_SECRET`` sets it; when unset, a random one is made once and kept in the
data folder (``patient-key.secret``, readable by its owner only), so keys stay stable across restarts.
To rotate: move the current secret to ``MDD_PATIENT_KEY_PREVIOUS_SECRETS`` and set a new one; new
instances get keys under the new secret, and ``patient_keys`` gives every key a patient may have, for lookup.
"""

from __future__ import annotations

import hashlib
import hmac

from shared.local_secrets import configured_or_kept
from shared.settings import Settings

SECRET_FILE = "patient-key.secret"
KEY_HEX_DIGITS = 32


def current_secret(settings: Settings) -> str:
    """The secret new patient keys are made with."""
    return configured_or_kept(settings.patient_key_secret, settings, SECRET_FILE)


def keyed_patient_key(secret: str, hospital_id: str, patient_id: str) -> str:
    """HMAC-SHA256 of hospital and PatientID under ``secret``, as hex digits."""
    digest = hmac.new(secret.encode(), f"{hospital_id}\x00{patient_id}".encode(), hashlib.sha256).hexdigest()
    return digest[:KEY_HEX_DIGITS]


def patient_key(settings: Settings, hospital_id: str, patient_id: str) -> str:
    """A pseudonymous, stable key for a patient of a hospital (never the PatientID itself)."""
    return keyed_patient_key(current_secret(settings), hospital_id, patient_id)


def patient_keys(settings: Settings, hospital_id: str, patient_id: str) -> list[str]:
    """Every key the patient may carry: under the current secret first, then under each previous one."""
    previous = [secret.get_secret_value() for secret in settings.patient_key_previous_secrets if secret.get_secret_value()]
    return [keyed_patient_key(secret, hospital_id, patient_id) for secret in [current_secret(settings), *previous]]
