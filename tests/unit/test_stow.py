"""STOW-RS parsing and responses."""

import pytest

from services.ingest.stow import BodyTooLarge, MultipartError, PartReader, StoredItem, boundary_of, http_status, split_parts, store_response


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


BODY = (b"--b1\r\nContent-Type: application/dicom\r\n\r\n" + bytes(range(256)) * 40 + b"\r\n--b1\r\n"
        b"Content-Type: application/dicom\r\n\r\nX\r\n--b1--\r\n")


def test_parts_are_spooled_as_the_body_streams_in_small_pieces(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reader = PartReader("b1", tmp_path, max_body_bytes=len(BODY), max_part_bytes=10_240)
    for at in range(0, len(BODY), 7):
        reader.feed(BODY[at : at + 7])
    first, second = reader.finish()
    reader.close()
    assert first.path is not None and first.path.read_bytes() == bytes(range(256)) * 40 and not first.oversize
    assert second.path is not None and second.path.read_bytes() == b"X"
    assert first.headers == {"content-type": "application/dicom"}


def test_a_part_past_its_limit_is_counted_not_kept_and_a_body_past_its_limit_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reader = PartReader("b1", tmp_path, max_part_bytes=10_239)
    reader.feed(BODY)
    first, second = reader.finish()
    assert first.oversize and first.size == 10_240 and first.path is not None and first.path.stat().st_size == 0
    assert not second.oversize
    with pytest.raises(BodyTooLarge, match="the body exceeds 100 bytes"):
        PartReader("b1", tmp_path, max_body_bytes=100).feed(BODY)


def test_a_body_cut_short_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reader = PartReader("b1", tmp_path)
    reader.feed(BODY[:-20])
    with pytest.raises(MultipartError, match="incomplete"):
        reader.finish()
