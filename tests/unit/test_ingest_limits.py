"""Any door: per-instance size, bounded inflating, pixel data against the dimensions, absurd dimensions."""

from __future__ import annotations

import asyncio
import copy
import io

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from services.ingest.intake import DATASET_DOES_NOT_MATCH_SOP_CLASS, OUT_OF_RESOURCES, SUCCESS, Ingest, read_header
from services.ingest.validation import DEFAULT_LIMITS, InputLimits, InstanceTooLarge, image_problem, read_checked
from shared.synth import SyntheticStudy
from tests.corpus import bad_inputs, deflate_bomb, peak_memory, rle_bomb
from tests.unit.test_intake import ingest  # noqa: F401 (fixture)

MB = 1024 * 1024


def _encoded(dataset, syntax: str) -> bytes:  # type: ignore[no-untyped-def]
    dataset = copy.deepcopy(dataset)
    if syntax == RLELossless:
        dataset.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    else:
        dataset.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless])
def test_a_good_instance_passes_in_every_framing(four_view_study: SyntheticStudy, syntax: str) -> None:
    view = four_view_study.views[0]
    header = read_header(_encoded(view.dataset, syntax))
    assert header.sop_instance_uid == str(view.dataset.SOPInstanceUID) and header.transfer_syntax_uid == syntax


def test_a_multi_frame_rle_image_with_a_fragment_per_frame_passes(four_view_study: SyntheticStudy) -> None:
    import numpy as np

    dataset = copy.deepcopy(four_view_study.views[0].dataset)
    frames = np.stack([dataset.pixel_array] * 3)
    dataset.NumberOfFrames = 3
    dataset.compress(RLELossless, frames, encoding_plugin="pydicom")
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    _, structure = read_checked(buffer.getvalue())
    assert (structure.fragments, structure.offsets) == (3, 3)  # pydicom writes the Basic Offset Table
    assert image_problem(dataset, structure) is None


async def test_each_bomb_and_lie_gets_its_status_and_reason(ingest: Ingest, four_view_study: SyntheticStudy) -> None:  # noqa: F811
    bombs = [bad for bad in bad_inputs(four_view_study.views[0]) if bad.reason]
    assert len(bombs) == 4
    for bad in bombs:
        outcome = await asyncio.to_thread(ingest.accept, bad.data, calling_ae="MAMO1")
        assert (outcome.status, bad.name) == (bad.expected_status, bad.name)
        assert bad.reason in outcome.message and " / " in outcome.message, outcome.message  # Spanish / English
    assert ingest.store.list_keys(ingest.settings.bucket_dicom, "") == []
    # The door is still open: a good view is stored after them.
    assert (await asyncio.to_thread(ingest.accept, four_view_study.views[1].to_bytes(), calling_ae="MAMO1")).status == SUCCESS


def test_a_deflate_bomb_is_refused_without_inflating_it_in_memory(four_view_study: SyntheticStudy) -> None:
    bomb = deflate_bomb(four_view_study.views[0])
    assert len(bomb) < 1 * MB
    with peak_memory() as peak, pytest.raises(InstanceTooLarge, match="inflates to more than 268435456 bytes"):
        read_header(bomb)
    assert peak[0] < 8 * MB, peak
    # Under a higher limit the same file is read from its inflated copy on disk, still not in memory.
    with peak_memory() as peak:
        header = read_header(bomb, InputLimits(DEFAULT_LIMITS.instance_max_bytes, 512 * MB, 16384, 2**30))
    assert header.sop_instance_uid == str(four_view_study.views[0].dataset.SOPInstanceUID) and peak[0] < 8 * MB, peak


async def test_an_instance_over_the_size_limit_is_refused_with_a700(ingest: Ingest, four_view_study: SyntheticStudy) -> None:  # noqa: F811
    data = four_view_study.views[0].to_bytes()
    ingest.limits = InputLimits(len(data) - 1, DEFAULT_LIMITS.inflated_max_bytes, 16384, 2**30)
    outcome = await asyncio.to_thread(ingest.accept, data, calling_ae="MAMO1")
    assert outcome.status == OUT_OF_RESOURCES
    assert f"the instance is {len(data)} bytes, at most {len(data) - 1}" in outcome.message


async def test_more_pixels_than_the_budget_are_refused(ingest: Ingest, four_view_study: SyntheticStudy) -> None:  # noqa: F811
    view = four_view_study.views[0]
    ingest.limits = InputLimits(DEFAULT_LIMITS.instance_max_bytes, DEFAULT_LIMITS.inflated_max_bytes, 16384,
                                int(view.dataset.Rows) * int(view.dataset.Columns) - 1)
    outcome = await asyncio.to_thread(ingest.accept, view.to_bytes(), calling_ae="MAMO1")
    assert outcome.status == DATASET_DOES_NOT_MATCH_SOP_CLASS and "too many pixels" in outcome.message


async def test_an_rle_bomb_passes_ingest_its_pixels_are_judged_when_decoded(ingest: Ingest, four_view_study: SyntheticStudy) -> None:  # noqa: F811
    bomb = rle_bomb(four_view_study.views[0])
    assert len(bomb) < 4096
    assert (await asyncio.to_thread(ingest.accept, bomb, calling_ae="MAMO1")).status == SUCCESS


def test_the_spool_sweep_removes_leftovers_and_spares_transfers_in_progress(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    from services.ingest.adapters.scp import sweep_spool

    old, fresh = tmp_path / "viejo.dcm", tmp_path / "mdd-upload-activo"
    old.write_bytes(b"x")
    fresh.mkdir()
    (fresh / "upload.zip").write_bytes(b"PK")  # still being written by another replica
    os.utime(old, (time.time() - 3600,) * 2)
    os.utime(fresh, (time.time() - 3600,) * 2)
    assert sweep_spool(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["mdd-upload-activo"]


@pytest.mark.parametrize(("photometric", "length", "refused"), [
    ("YBR_FULL_422", 4 * 4 * 2, False),  # two samples a pixel once subsampled (PS3.5 8.2)
    ("RGB", 4 * 4 * 3, False),
    ("RGB", 4 * 4 * 2, True),
])
def test_native_pixel_length_follows_the_photometric_interpretation(photometric: str, length: int, refused: bool) -> None:
    from pydicom.dataset import Dataset

    from services.ingest.validation import Structure

    dataset = Dataset()
    dataset.Rows = dataset.Columns = 4
    dataset.SamplesPerPixel, dataset.BitsAllocated, dataset.PhotometricInterpretation = 3, 8, photometric
    problem = image_problem(dataset, Structure(None, True, native_pixel_bytes=length))
    assert (problem is not None) == refused, problem
