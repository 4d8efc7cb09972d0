"""The local-folder object store."""

import hashlib

import pytest

from shared.store import LocalStore, ObjectNotFound


def test_put_get_stat_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path)
    store.ensure_buckets(["dicom"])
    store.put_bytes("dicom", "H/1/2/3.dcm", b"DICM", "application/dicom")
    assert store.get_bytes("dicom", "H/1/2/3.dcm") == b"DICM"
    info = store.stat("dicom", "H/1/2/3.dcm")
    assert info is not None and info.size == 4 and info.sha256 == hashlib.sha256(b"DICM").hexdigest()
    assert store.list_keys("dicom") == ["H/1/2/3.dcm"]
    assert store.stat("dicom", "nope") is None
    with pytest.raises(ObjectNotFound):
        store.get_bytes("dicom", "nope")


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_keys_cannot_escape_the_bucket(tmp_path, key) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        LocalStore(tmp_path).put_bytes("dicom", key, b"x", "application/octet-stream")
