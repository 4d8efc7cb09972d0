"""Patient keys are a keyed HMAC: stable for a deployment, unrecoverable without its secret, rotatable."""

from __future__ import annotations

import hashlib

from pydantic import SecretStr

from shared.pseudonyms import SECRET_FILE, patient_key, patient_keys
from shared.settings import Settings


def test_key_is_not_the_unsalted_hash_and_depends_on_the_secret(settings: Settings) -> None:
    settings.patient_key_secret = SecretStr("secreto-de-la-implantacion-A")
    key = patient_key(settings, "HOSP-A", "1234567")
    assert key == patient_key(settings, "HOSP-A", "1234567") and "1234567" not in key
    # The old key (unsalted SHA-256) is found by trying every 7-digit record number: it must not match.
    assert not hashlib.sha256(b"HOSP-A\x001234567").hexdigest().startswith(key[:24])
    assert key != patient_key(settings, "HOSP-B", "1234567") != patient_key(settings, "HOSP-A", "1234568")
    other = settings.model_copy(update={"patient_key_secret": SecretStr("secreto-de-otra-implantacion")})
    assert patient_key(other, "HOSP-A", "1234567") != key


def test_unset_secret_is_made_once_and_kept_private(settings: Settings) -> None:
    first = patient_key(settings, "HOSP-A", "42")
    path = settings.data_dir / SECRET_FILE
    assert path.stat().st_mode & 0o077 == 0 and len(path.read_text()) >= 32
    assert patient_key(Settings(data_dir=settings.data_dir), "HOSP-A", "42") == first  # a restart keeps it


def test_rotation_keeps_old_keys_findable(settings: Settings) -> None:
    settings.patient_key_secret = SecretStr("secreto-viejo-000000000")
    old = patient_key(settings, "HOSP-A", "42")
    rotated = settings.model_copy(update={"patient_key_secret": SecretStr("secreto-nuevo-111111111"),
                                          "patient_key_previous_secrets": [SecretStr("secreto-viejo-000000000")]})
    new = patient_key(rotated, "HOSP-A", "42")
    assert new != old and patient_keys(rotated, "HOSP-A", "42") == [new, old]
