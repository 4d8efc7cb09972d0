"""The project's lossless JPEG (SOF3) codec: exact pixels back, standard streams, clear errors."""

import numpy as np
import pytest

from mlkit.datasets.lossless_jpeg import (
    LosslessJpegError,
    decode_lossless_jpeg,
    encode_lossless_jpeg,
    read_header,
)

# Written by hand from ITU T.81: 8-bit 2x3 image [[128, 129, 127], [130, 130, 131]], predictor 1,
# one DC table with codes 00 -> SSSS 0, 01 -> SSSS 1, 10 -> SSSS 2. Differences 0, 1, -2 / 2, 0, 1
# give the bits 00 011 1001 | 1010 00 011 + 1-padding = 1C D0 FF, and FF is stuffed as FF 00.
HAND_MADE = bytes.fromhex(
    "FFD8"
    "FFC3000B08000200030101" "1100"
    "FFC40016" "00" "0003" + "00" * 14 + "000102"
    "FFDA0008010100010000"
    "1CD0FF00"
    "FFD9"
)


def _mammogram_like(rows: int, cols: int, bits: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    smooth = (np.sin(y / 9.0) + np.cos(x / 7.0) + 2) / 4 * ((1 << bits) - 1)
    noisy = smooth + rng.normal(0, 20, smooth.shape)
    return np.clip(noisy, 0, (1 << bits) - 1).astype(np.uint16)


def test_a_hand_written_stream_decodes_to_its_pixels() -> None:
    image = decode_lossless_jpeg(HAND_MADE)
    assert image.dtype == np.uint16
    assert image.tolist() == [[128, 129, 127], [130, 130, 131]]


def test_the_encoder_header_describes_the_image() -> None:
    image = np.array([[128, 129, 127], [130, 130, 131]])
    header, _ = read_header(encode_lossless_jpeg(image, precision=8, predictor=6))
    assert (header.precision, header.rows, header.cols, header.predictor, header.components) == (8, 2, 3, 6, 1)


@pytest.mark.parametrize("predictor", range(1, 8))
@pytest.mark.parametrize("bits", [8, 12, 16])
def test_every_predictor_and_precision_round_trips_exactly(predictor: int, bits: int) -> None:
    image = _mammogram_like(23, 31, bits, seed=predictor * bits)
    data = encode_lossless_jpeg(image, precision=bits, predictor=predictor)
    assert read_header(data)[0].predictor == predictor
    np.testing.assert_array_equal(decode_lossless_jpeg(data), image)


def test_restart_markers_and_wrapping_differences_are_decoded() -> None:
    # Full-range noise with the planar predictor needs the modulo-2**16 arithmetic of T.81.
    image = np.random.default_rng(3).integers(0, 1 << 16, (40, 17)).astype(np.uint16)
    data = encode_lossless_jpeg(image, precision=16, predictor=4, restart_rows=6)
    assert b"\xff\xd0" in data and b"\xff\xdd" in data
    np.testing.assert_array_equal(decode_lossless_jpeg(data), image)


def test_a_large_film_decodes_in_one_piece() -> None:
    image = _mammogram_like(700, 500, 12, seed=1)
    np.testing.assert_array_equal(decode_lossless_jpeg(encode_lossless_jpeg(image, precision=12)), image)


def test_truncated_and_lossy_files_are_refused_with_a_reason() -> None:
    data = encode_lossless_jpeg(_mammogram_like(30, 30, 12, seed=2), precision=12)
    with pytest.raises(LosslessJpegError, match="truncad"):
        decode_lossless_jpeg(data[: len(data) // 2])
    baseline = data.replace(b"\xff\xc3", b"\xff\xc0", 1)
    with pytest.raises(LosslessJpegError, match="SOF0"):
        decode_lossless_jpeg(baseline)
    with pytest.raises(LosslessJpegError, match="SOI"):
        decode_lossless_jpeg(b"not a jpeg")


def test_a_header_without_line_count_takes_the_given_rows() -> None:
    image = _mammogram_like(12, 9, 12, seed=4)
    data = bytearray(encode_lossless_jpeg(image, precision=12))
    sof = data.index(b"\xff\xc3")
    data[sof + 5 : sof + 7] = b"\x00\x00"  # Y = 0, as when a DNL marker was expected
    with pytest.raises(LosslessJpegError):
        decode_lossless_jpeg(bytes(data))
    np.testing.assert_array_equal(decode_lossless_jpeg(bytes(data), rows=12), image)
