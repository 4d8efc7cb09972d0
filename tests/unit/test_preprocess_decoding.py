"""Every transfer syntax the ingest accepts decodes into correct masks; grey scales; tag fallbacks."""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from services.ingest.adapters.scp import TRANSFER_SYNTAXES
from shared.imaging.display import MG_FOR_PROCESSING, DecodingError, to_display
from shared.imaging.pipeline import orient, preprocess_view
from shared.synth import MAX_VALUE, SyntheticView, make_view

LOSSY = {JPEGBaseline8Bit, JPEGLSNearLossless, JPEG2000}
ALL_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _reread(ds: Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _encapsulated(ds: pydicom.Dataset, frame: bytes, syntax: UID) -> None:
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax


def encode(view: SyntheticView, syntax: UID) -> pydicom.Dataset:
    """The synthetic view as a modality would send it in ``syntax``, read back from bytes."""
    ds = pydicom.dcmread(io.BytesIO(view.to_bytes()))
    pixels = ds.pixel_array
    if syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
    elif syntax == JPEGBaseline8Bit:
        # Baseline JPEG carries 8 bits: the 12-bit image and its window scaled down by 16.
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.WindowCenter, ds.WindowWidth = str(float(ds.WindowCenter) / 16), str(float(ds.WindowWidth) / 16)
        buffer = io.BytesIO()
        Image.fromarray((pixels >> 4).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        _encapsulated(ds, buffer.getvalue(), syntax)
    elif syntax == JPEGLosslessSV1:
        # Process 14, first-order prediction (selection value 1), as libjpeg-turbo writes it.
        frame = imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=1, bitspersample=12)
        _encapsulated(ds, bytes(frame), syntax)
    elif syntax == JPEGLSNearLossless:
        ds.compress(syntax, jls_error=3)
    elif syntax == JPEG2000:
        ds.compress(syntax, j2k_cr=[20])
    else:
        ds.compress(syntax)
    return _reread(ds)


def test_every_syntax_the_ingest_accepts_is_tested() -> None:
    assert set(TRANSFER_SYNTAXES) == set(ALL_SYNTAXES)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("syntax", ALL_SYNTAXES, ids=lambda uid: UID(uid).keyword)
def test_each_transfer_syntax_gives_correct_masks(syntax: UID, photometric: str) -> None:
    view = make_view(laterality="R", view="MLO", seed=11, density=0.5, photometric=photometric)  # type: ignore[arg-type]
    ds = encode(view, syntax)
    assert ds.file_meta.TransferSyntaxUID == syntax

    result = preprocess_view(ds)
    assert _iou(result.mask, orient(view.breast_mask, "R")) >= 0.95
    assert _iou(result.pectoral_mask, orient(view.pectoral_mask, "R")) >= 0.85
    assert (result.laterality, result.view, result.flags) == ("R", "MLO", [])
    if syntax not in LOSSY:
        reference = to_display(pydicom.dcmread(io.BytesIO(view.to_bytes())))
        assert np.array_equal(to_display(ds), reference)


def test_unsupported_compression_is_a_clear_error() -> None:
    ds = pydicom.dcmread(io.BytesIO(make_view(laterality="L", view="CC", seed=1).to_bytes()))
    _encapsulated(ds, b"\xff\x0a" + bytes(64), UID("1.2.840.10008.1.2.4.110"))  # JPEG XL lossless
    with pytest.raises(DecodingError, match="No se pudo decodificar.*JPEG XL"):
        preprocess_view(_reread(ds))


def _for_processing(view: SyntheticView) -> pydicom.Dataset:
    """A raw For Processing image: signal proportional to exposure, so the breast has low values."""
    ds = pydicom.dcmread(io.BytesIO(view.to_bytes()))
    attenuation = ds.pixel_array.astype(np.float64) / MAX_VALUE
    raw = np.rint(16000.0 * np.exp(-2.5 * attenuation)).astype(np.uint16)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MG_FOR_PROCESSING
    ds.PresentationIntentType = "FOR PROCESSING"
    ds.PixelIntensityRelationship = "LIN"
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsStored, ds.HighBit = 14, 13
    del ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction
    ds.PixelData = raw.tobytes()
    return _reread(ds)


@pytest.mark.parametrize(("laterality", "view_name"), [("L", "CC"), ("R", "MLO")])
def test_for_processing_image_without_window_is_segmented(laterality: str, view_name: str) -> None:
    view = make_view(laterality=laterality, view=view_name, seed=12, density=0.6)  # type: ignore[arg-type]
    ds = _for_processing(view)
    display = to_display(ds)
    truth = view.breast_mask

    assert float(np.median(display[truth])) > float(np.median(display[~truth])) + 0.3
    assert _iou(preprocess_view(ds).mask, orient(truth, laterality)) >= 0.95


def test_signed_pixels_with_rescale_match_the_unsigned_image() -> None:
    view = make_view(laterality="L", view="MLO", seed=13)
    reference = to_display(pydicom.dcmread(io.BytesIO(view.to_bytes())))
    ds = pydicom.dcmread(io.BytesIO(view.to_bytes()))
    signed = (ds.pixel_array.astype(np.int32) - 2048).astype(np.int16)
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "2048"
    ds.PixelData = signed.tobytes()

    assert np.allclose(to_display(_reread(ds)), reference, atol=1e-6)


def test_voi_lut_sequence_is_applied() -> None:
    view = make_view(laterality="R", view="CC", seed=14)
    ds = pydicom.dcmread(io.BytesIO(view.to_bytes()))
    stored = ds.pixel_array
    # A gamma curve over the 12-bit range, 16-bit output.
    table = np.rint(65535 * (np.arange(4096) / 4095.0) ** 0.5).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = table.tolist()
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = [item]
    del ds.WindowCenter, ds.WindowWidth

    display = to_display(_reread(ds))
    assert np.allclose(display, table[stored] / 65535.0, atol=1e-6)


def test_monochrome1_window_is_inverted() -> None:
    kw = {"laterality": "L", "view": "CC", "seed": 15}
    mono1 = to_display(pydicom.dcmread(io.BytesIO(make_view(photometric="MONOCHROME1", **kw).to_bytes())))  # type: ignore[arg-type]
    mono2 = to_display(pydicom.dcmread(io.BytesIO(make_view(photometric="MONOCHROME2", **kw).to_bytes())))  # type: ignore[arg-type]
    assert np.allclose(mono1, mono2, atol=1e-3)


@pytest.mark.parametrize(("laterality", "view_name"), [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")])
def test_laterality_and_view_come_from_the_image_without_tags(laterality: str, view_name: str) -> None:
    view = make_view(laterality=laterality, view=view_name, seed=16, density=0.4)  # type: ignore[arg-type]
    ds = pydicom.dcmread(io.BytesIO(view.to_bytes()))
    del ds.ImageLaterality, ds.ViewPosition, ds.ViewCodeSequence, ds.PatientOrientation

    result = preprocess_view(ds)
    assert (result.laterality, result.view) == (laterality, view_name)
    assert result.laterality_from_image and result.view_from_image
    assert {"laterality_missing", "view_missing"} <= set(result.flags)
    assert _iou(result.mask, orient(view.breast_mask, laterality)) >= 0.95


def test_tags_win_over_the_image() -> None:
    view = make_view(laterality="L", view="CC", seed=17)
    result = preprocess_view(pydicom.dcmread(io.BytesIO(view.to_bytes())))
    assert (result.laterality_from_image, result.view_from_image) == (False, False)
    assert not result.pectoral_mask.any()
