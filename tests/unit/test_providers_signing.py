"""Webhook signatures: what a provider checks before trusting a body, and the docs' copy of it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.notify.providers.signing import (
    SignatureError,
    compute_signature,
    signature_header,
    verify_signature,
)

SECRET = "s3cr3t-del-proveedor"
BODY = b'{"event_type":"provider.study","study_uid":"2.123","instances":[]}'
DOCS = Path(__file__).resolve().parents[2] / "docs" / "providers.md"


def test_a_fresh_signature_of_the_exact_body_verifies_and_gives_its_timestamp() -> None:
    header = signature_header(SECRET, BODY)
    stamp = int(re.fullmatch(r"t=(\d+),v1=[0-9a-f]{64}", header).group(1))  # type: ignore[union-attr]
    assert abs(stamp - time.time()) < 5
    assert verify_signature(SECRET, BODY, header) == stamp


def test_a_tampered_body_is_rejected() -> None:
    header = signature_header(SECRET, BODY)
    with pytest.raises(SignatureError, match="no corresponde"):
        verify_signature(SECRET, BODY.replace(b"2.123", b"2.124"), header)


def test_a_stale_timestamp_is_rejected_even_with_a_valid_mac() -> None:
    old = int(time.time()) - 301
    with pytest.raises(SignatureError, match="fuera de tiempo"):
        verify_signature(SECRET, BODY, signature_header(SECRET, BODY, timestamp=old), tolerance=300)
    assert verify_signature(SECRET, BODY, signature_header(SECRET, BODY, timestamp=old), tolerance=600) == old


def test_another_secret_or_a_replayed_mac_with_a_new_timestamp_is_rejected() -> None:
    now = int(time.time())
    with pytest.raises(SignatureError):
        verify_signature("otro-secreto", BODY, signature_header(SECRET, BODY, now))
    forged = f"t={now},v1={compute_signature(SECRET, BODY, now - 1000)}"
    with pytest.raises(SignatureError):
        verify_signature(SECRET, BODY, forged)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=123", "t=abc,v1=00", "firma"])
def test_a_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(SignatureError, match="mal formado"):
        verify_signature(SECRET, BODY, header)


def test_any_of_several_v1_signatures_may_match_so_secrets_can_rotate() -> None:
    now = int(time.time())
    header = f"t={now},v1={compute_signature('secreto-viejo', BODY, now)},v1={compute_signature(SECRET, BODY, now)}"
    assert verify_signature(SECRET, BODY, header) == now


def _docs_verifier() -> Callable[..., int]:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    code = next(block for block in blocks if "def verify_signature" in block)
    namespace: dict[str, object] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace["verify_signature"]  # type: ignore[return-value]


def test_the_standalone_snippet_in_the_docs_agrees_with_the_service() -> None:
    verify = _docs_verifier()
    header = signature_header(SECRET, BODY)
    assert verify(SECRET, BODY, header) == int(header.split(",")[0][2:])
    with pytest.raises(ValueError):
        verify(SECRET, BODY + b" ", header)
    with pytest.raises(ValueError):
        verify(SECRET, BODY, signature_header(SECRET, BODY, timestamp=int(time.time()) - 3600))
