"""STOW-RS parsing and responses."""

import pytest

from services.ingest.stow import MultipartError, StoredItem, boundary_of, http_status, split_parts, store_response


def test_parts_are_split_byte_exact() -> None:
    payload = b"\x00\r\n\r\n--not-the-boundary\xff"
    body = b"--b1\r\nContent-Type: application/dicom\r\n\r\n" + payload + b"\r\n--b1\r\nContent-Type: application/dicom\r\n\r\nX\r\n--b1--\r\n"
    parts = split_parts(body, boundary_of('multipart/related; type="application/dicom"; boundary="b1"'))
    assert [content for _, content in parts] == [payload, b"X"]
    assert parts[0][0]["content-type"] == "application/dicom"


def test_missing_boundary_or_parts_is_an_error() -> None:
    with pytest.raises(MultipartError):
        boundary_of('multipart/related; type="application/dicom"')
    with pytest.raises(MultipartError):
        split_parts(b"no parts here", "b1")


def test_response_and_status_follow_ps3_18() -> None:
    ok = StoredItem("1.2.840.10008.5.1.4.1.1.1.2", "1.2.3", retrieve_url="http://x/studies/1")
    bad = StoredItem("1.2.840.10008.5.1.4.1.1.1.2", "1.2.4", failure_reason=0xA900)
    body = store_response([ok, bad], "http://x/studies/1")
    assert body["00081199"]["Value"][0]["00081155"]["Value"] == ["1.2.3"]
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    assert (http_status([ok]), http_status([ok, bad]), http_status([bad]), http_status([])) == (200, 202, 409, 409)
