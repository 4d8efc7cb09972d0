"""The preprocess service on a study: derived files in the store and quality flags on the event."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pydicom
import pytest
from PIL import Image

from services.preprocess.handlers import PreprocessHandlers, study_flags
from shared.imaging.pipeline import (
    MASK_LABELS,
    PREVIEW_MAX_SIDE,
    derived_files,
    magma,
    orient,
    preprocess_view,
)
from shared.events import DerivedView, StudyCompleted, StudyPreprocessed, ViewRef, producer
from shared.runtime import ServiceContext, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy, SyntheticView, make_study, make_view


@pytest.fixture
def ctx(settings: Settings) -> Iterator[ServiceContext]:
    context = build_context(settings)
    yield context
    context.engine.dispose()


def _completed(ctx: ServiceContext, study_uid: str, views: list[SyntheticView]) -> StudyCompleted:
    """Store the views as ingest would and announce the study."""
    refs = []
    for view in views:
        ds = view.dataset
        key = f"HOSP-DEMO/{study_uid}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        ctx.store.put_bytes(ctx.settings.bucket_dicom, key, view.to_bytes(), "application/dicom")
        refs.append(ViewRef(sop_instance_uid=ds.SOPInstanceUID, series_instance_uid=ds.SeriesInstanceUID, object_key=key))
    return StudyCompleted(
        study_uid=study_uid,
        hospital_id="HOSP-DEMO",
        correlation_id="corr-1",
        producer=producer("ingest"),
        reason="all_views",
        views=refs,
    )


def _png(ctx: ServiceContext, key: str) -> Image.Image:
    return Image.open(io.BytesIO(ctx.store.get_bytes(ctx.settings.bucket_derived, key)))


async def test_four_view_study_stores_every_output(ctx: ServiceContext, four_view_study: SyntheticStudy) -> None:
    handlers = PreprocessHandlers(ctx)
    event = await handlers.on_study_completed(_completed(ctx, four_view_study.study_uid, four_view_study.views))

    assert isinstance(event, StudyPreprocessed)
    assert (event.segmentation_backend, event.quality_flags, event.correlation_id) == ("classic", [], "corr-1")
    assert {(v.laterality, v.view_position) for v in event.views} == {("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")}
    for derived, view in zip(event.views, four_view_study.views, strict=True):
        assert derived.mask_key == f"{event.hospital_id}/{four_view_study.study_uid}/{derived.sop_instance_uid}/mask.png"
        labels = np.asarray(_png(ctx, derived.mask_key))
        truth = orient(view.breast_mask, view.laterality)
        assert labels.shape == truth.shape
        assert ((labels > 0) == preprocess_view(view.dataset).mask).all()
        expected_labels = {0, 1, 2} if view.view == "MLO" else {0, 1}
        assert set(np.unique(labels).tolist()) == expected_labels
        pectoral = labels == MASK_LABELS["pectoral"]
        assert (pectoral == orient(view.pectoral_mask, view.laterality)).mean() > 0.99

        crop, coloured = _png(ctx, derived.crop_key), _png(ctx, derived.magma_key)
        assert crop.mode == "L" and crop.size == coloured.size
        assert np.array_equal(np.asarray(coloured.convert("RGB")), magma(np.asarray(crop)))
        model_input = np.load(io.BytesIO(ctx.store.get_bytes(ctx.settings.bucket_derived, derived.input_key)))
        assert model_input.shape == (336, 224, 3) and model_input.dtype == np.float32
        assert derived.breast_area_fraction == pytest.approx(float(truth.mean()), abs=0.03)


async def test_missing_view_and_tags_are_flagged(ctx: ServiceContext) -> None:
    study = make_study(seed=21)
    untagged = study.views[3]  # L-MLO without laterality: the image says which breast it is
    del untagged.dataset.ImageLaterality
    views = [study.views[0], study.views[2], untagged]

    event = await PreprocessHandlers(ctx).on_study_completed(_completed(ctx, study.study_uid, views))
    assert event.quality_flags == ["fewer_than_four_views", "laterality_missing"]
    assert event.views[2].laterality == "L" and event.views[2].flags == ["laterality_missing"]


def test_study_flags_need_all_four_standard_views() -> None:
    def derived(laterality: str | None, view: str | None, *flags: str) -> DerivedView:
        return DerivedView(
            sop_instance_uid=f"{laterality}{view}",
            laterality=laterality,
            view_position=view,
            mask_key="m",
            crop_key="c",
            magma_key="g",
            input_key="i",
            breast_area_fraction=0.4,
            flags=list(flags),
        )

    complete = [derived("R", "CC"), derived("L", "CC"), derived("R", "MLO"), derived("L", "MLO")]
    assert study_flags(complete) == []
    # Four images, but two of them the same view: L-MLO is still missing.
    assert study_flags(complete[:3] + [derived("R", "CC")]) == ["fewer_than_four_views"]
    assert study_flags([*complete, derived(None, None, "not_mg", "view_missing")]) == ["not_mg", "view_missing"]
    assert study_flags([derived("R", "CC", "breast_area_too_small")]) == [
        "breast_area_too_small",
        "fewer_than_four_views",
    ]


async def test_non_mammogram_is_flagged(ctx: ServiceContext) -> None:
    study = make_study(seed=22)
    study.views[0].dataset.Modality = "DX"
    event = await PreprocessHandlers(ctx).on_study_completed(_completed(ctx, study.study_uid, study.views))
    assert event.quality_flags == ["not_mg"]
    assert event.views[0].flags == ["not_mg"]


def test_previews_are_shrunk_and_the_mask_stays_full_size() -> None:
    view = make_view(laterality="L", view="CC", rows=2048, cols=1664, seed=23)
    result = preprocess_view(pydicom.dcmread(io.BytesIO(view.to_bytes())))
    files = derived_files(result)

    assert set(files) == {"mask.png", "crop.png", "magma.png", "input.npy"}
    crop = Image.open(io.BytesIO(files["crop.png"][0]))
    assert max(crop.size) == PREVIEW_MAX_SIDE
    assert crop.size[1] / crop.size[0] == pytest.approx(result.crop.shape[0] / result.crop.shape[1], rel=0.01)
    assert Image.open(io.BytesIO(files["magma.png"][0])).size == crop.size
    mask = np.asarray(Image.open(io.BytesIO(files["mask.png"][0])))
    assert np.array_equal(mask > 0, result.mask)
    assert np.array_equal(np.load(io.BytesIO(files["input.npy"][0])), result.model_input)
    assert all(content_type for _, content_type in files.values())


def test_crop_is_masked_like_the_seed() -> None:
    view = make_view(laterality="R", view="CC", seed=24)
    ds = pydicom.dcmread(io.BytesIO(view.to_bytes()))
    truth = orient(view.breast_mask, "R")
    rows, cols = np.nonzero(truth)
    # A bright marker in the background, inside the breast's bounding box (corner by the nipple).
    marker = np.zeros_like(truth)
    marker[rows.min() : rows.min() + 6, cols.max() - 12 : cols.max() - 4] = True
    assert not (marker & truth).any()
    pixels = ds.pixel_array.copy()
    pixels[orient(marker, "R")] = 4095
    ds.PixelData = pixels.tobytes()
    result = preprocess_view(ds)

    r0, r1, c0, c1 = result.bbox
    assert not result.mask[marker].any()
    assert not result.crop[marker[r0:r1, c0:c1]].any()
    assert result.crop[result.mask[r0:r1, c0:c1]].mean() > 50
