"""Secrets a one-machine deployment makes for itself: random once, kept in the data folder, owner-only.

A setting that names the secret always wins (compose passes every one of them, from ``mdd secrets
init``); without it, the processes sharing a data folder share the secret, and it survives restarts.
"""

from __future__ import annotations

import os
import secrets
from functools import cache
from pathlib import Path

from pydantic import SecretStr

from shared.settings import Settings

INGEST_HTTP_TOKEN_FILE = "ingest-http.token"


@cache
def secret_kept_in(path: Path) -> str:
    """The secret in ``path``, made (48 URL-safe characters, mode 0600) if it is not there yet.

    Read once per process: callers may ask for it on every request.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def configured_or_kept(value: SecretStr | None, settings: Settings, file_name: str) -> str:
    """``value`` when set and not empty, else the secret kept in the data folder under ``file_name``."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    return secret_kept_in(settings.data_dir / file_name)


def ingest_http_token(settings: Settings) -> str:
    """The token the status API presents at ingest's HTTP doors (``MDD_INGEST_HTTP_TOKEN``)."""
    return configured_or_kept(settings.ingest_http_token, settings, INGEST_HTTP_TOKEN_FILE)
