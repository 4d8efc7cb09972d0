"""Gates before the light: images the model was not trained for are not scored, and the light says why.

Each case starts from a study the shipped model lights RED (or GREEN) and swaps in one kind of image it
cannot vouch for; the light must then be neither RED nor GREEN, and its reason must name the image.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator

import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset
from scipy import ndimage

from services.infer.handlers import InferHandlers
from services.infer.predictor import TorchPredictor
from services.preprocess.handlers import PreprocessHandlers
from shared.dicom_vocabulary import ViewModifier
from shared.events import StudyCompleted, StudyInferred, ViewRef, producer
from shared.imaging.applicability import NotEvaluable, header_gates
from shared.imaging.pipeline import preprocess_view
from shared.runtime import ServiceContext, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy, make_study

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
BREAST_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"


@pytest.fixture(scope="module")
def predictor() -> TorchPredictor:
    torch.set_num_threads(1)
    return TorchPredictor.from_setting(None)


@pytest.fixture(scope="module")
def suspicious() -> SyntheticStudy:
    """A four-view study with a suspicious mass in the left breast (the end-to-end test's study)."""
    return make_study(seed=7, finding="mass", finding_laterality="L")


@pytest.fixture(scope="module")
def clean() -> SyntheticStudy:
    return make_study(seed=12)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[ServiceContext]:
    context = build_context(settings)
    yield context
    context.engine.dispose()


def _copy(study: SyntheticStudy) -> list[Dataset]:
    return [pydicom.dcmread(io.BytesIO(view.to_bytes())) for view in study.views]


def _index(datasets: list[Dataset], laterality: str, view: str) -> int:
    return next(i for i, ds in enumerate(datasets) if (ds.ImageLaterality, ds.ViewPosition) == (laterality, view))


async def _light(ctx: ServiceContext, predictor: TorchPredictor, datasets: list[Dataset]) -> StudyInferred:
    """Run preprocess and infer on the study as the services do, and return the infer event."""
    study_uid = str(datasets[0].StudyInstanceUID)
    refs = []
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        key = f"HOSP-DEMO/{study_uid}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        ctx.store.put_bytes(ctx.settings.bucket_dicom, key, buffer.getvalue(), "application/dicom")
        refs.append(ViewRef(sop_instance_uid=ds.SOPInstanceUID, series_instance_uid=ds.SeriesInstanceUID, object_key=key))
    completed = StudyCompleted(
        study_uid=study_uid, hospital_id="HOSP-DEMO", correlation_id="c", producer=producer("ingest"),
        reason="all_views", views=refs,
    )
    preprocessed = await PreprocessHandlers(ctx).on_study_completed(completed)
    return await InferHandlers(ctx, predictor).on_study_preprocessed(preprocessed)  # type: ignore[arg-type]


def _modifier(ds: Dataset, modifier: ViewModifier) -> None:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = (
        modifier.code.value, modifier.code.scheme_designator, modifier.code.meaning,
    )
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = [item]


def _set_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def magnified(ds: Dataset) -> Dataset:
    """A 2x magnification view of the middle of ``ds``, tagged as such (View Modifier Code Sequence)."""
    out = copy.deepcopy(ds)
    pixels = ds.pixel_array
    rows, cols = pixels.shape
    middle = pixels[rows // 4 : rows // 4 + rows // 2, cols // 4 : cols // 4 + cols // 2]
    _set_pixels(out, ndimage.zoom(middle, 2, order=1)[:rows, :cols].astype(np.uint16))
    _modifier(out, ViewModifier.MAGNIFICATION)
    return out


def ct_slice(ds: Dataset) -> Dataset:
    """A CT-like axial slice (body outline, bone) in the L-CC slot: Modality CT, CT Image Storage."""
    out = copy.deepcopy(ds)
    yy, xx = np.mgrid[0:512, 0:512]
    body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 240.0) ** 2 < 1
    bone = ((yy - 330) / 30.0) ** 2 + ((xx - 256) / 40.0) ** 2 < 1
    hu = np.where(body, 40, -1000) + np.where(bone, 900, 0)
    _set_pixels(out, (hu + 1024).astype(np.uint16))
    out.Modality = "CT"
    out.SOPClassUID = out.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    out.RescaleIntercept, out.RescaleSlope, out.WindowCenter, out.WindowWidth = "-1024", "1", "40", "400"
    return out


def qc_phantom(ds: Dataset, tagged: bool = True) -> Dataset:
    """An ACR-like QC phantom: a block (with the heel effect and quantum noise) holding fibres, speck
    groups and discs."""
    out = copy.deepcopy(ds)
    rows, cols = ds.Rows, ds.Columns
    yy, xx = np.mgrid[0:rows, 0:cols]
    image = np.full((rows, cols), 60.0)
    block = (slice(rows // 6, 5 * rows // 6), slice(cols // 8, 7 * cols // 8))
    heel = 1500.0 + 700.0 * yy / rows
    image[block] = heel[block] + np.random.default_rng(0).normal(0, 25, heel[block].shape)
    for k in range(5):
        cy, cx = rows // 3 + k * rows // 12, cols // 4
        image[(np.abs(yy - cy) < 2) & (np.abs(xx - cx - 40) < 60)] += 120 - 20 * k  # fibres
        image[((yy - cy) ** 2 + (xx - cols // 2) ** 2) < (3 + k) ** 2] += 900 - 150 * k  # specks
        image[((yy - cy) ** 2 + (xx - 3 * cols // 4) ** 2) < (12 - k) ** 2] += 250 - 40 * k  # discs
    _set_pixels(out, np.clip(image, 0, 4095).astype(np.uint16))
    if tagged:
        out.QualityControlImage = "YES"
        out.SeriesDescription = "QC PHANTOM ACR"
    return out


def tomosynthesis(ds: Dataset, frames: int = 4) -> Dataset:
    """A breast tomosynthesis object: the same image as ``frames`` frames."""
    out = copy.deepcopy(ds)
    out.SOPClassUID = out.file_meta.MediaStorageSOPClassUID = BREAST_TOMOSYNTHESIS
    out.NumberOfFrames = frames
    out.PixelData = np.repeat(ds.pixel_array[None], frames, axis=0).tobytes()
    return out


def extreme_window(ds: Dataset) -> Dataset:
    """The same image with a window that turns every breast pixel white."""
    out = copy.deepcopy(ds)
    out.WindowCenter, out.WindowWidth = "300", "20"
    return out


async def test_the_unchanged_studies_are_red_and_green(
    ctx: ServiceContext, predictor: TorchPredictor, suspicious: SyntheticStudy, clean: SyntheticStudy
) -> None:
    red = await _light(ctx, predictor, _copy(suspicious))
    green = await _light(ctx, predictor, _copy(clean))
    assert (red.triage_light, green.triage_light) == ("RED", "GREEN"), (red.triage_reason, green.triage_reason)
    assert red.not_evaluated == [] and green.not_evaluated == []
    assert all(b.in_distribution for b in [*red.breasts, *green.breasts])


@pytest.mark.parametrize(
    ("make", "gate", "words"),
    [
        (ct_slice, NotEvaluable.NOT_MAMMOGRAM, "no evaluable por IA: no es una mastografía"),
        (qc_phantom, NotEvaluable.QUALITY_CONTROL, "no evaluable por IA: imagen de control de calidad"),
        (magnified, NotEvaluable.MAGNIFICATION, "no evaluable por IA: vista magnificada"),
        (tomosynthesis, NotEvaluable.MULTI_FRAME, "no evaluable por IA: tomosíntesis"),
    ],
    ids=["ct-slice", "qc-phantom", "magnified-view", "tomosynthesis"],
)
async def test_an_image_the_model_cannot_vouch_for_keeps_the_light_yellow(
    ctx: ServiceContext, predictor: TorchPredictor, suspicious: SyntheticStudy, make, gate: NotEvaluable, words: str
) -> None:
    datasets = _copy(suspicious)
    where = _index(datasets, "L", "CC")  # the breast with the mass: RED if it were scored
    datasets[where] = make(datasets[where])
    inferred = await _light(ctx, predictor, datasets)

    assert inferred.triage_light == "YELLOW", inferred.triage_reason
    assert words in inferred.triage_reason and gate.parts[1] in inferred.triage_reason
    assert "mama izquierda: sin dos vistas evaluables" in inferred.triage_reason
    assert [b.laterality for b in inferred.breasts] == ["R"]  # the left breast was not scored
    reasons = {(n.sop_instance_uid, n.reason) for n in inferred.not_evaluated}
    assert (str(datasets[where].SOPInstanceUID), gate.value) in reasons


async def test_a_study_with_an_extreme_window_is_not_scored(
    ctx: ServiceContext, predictor: TorchPredictor, suspicious: SyntheticStudy
) -> None:
    inferred = await _light(ctx, predictor, [extreme_window(ds) for ds in _copy(suspicious)])
    assert inferred.triage_light == "YELLOW", inferred.triage_reason
    assert "no evaluable por IA: ventana extrema" in inferred.triage_reason
    assert "not evaluable by AI: extreme window" in inferred.triage_reason
    assert inferred.breasts == []
    assert {n.reason for n in inferred.not_evaluated} == {"extreme_window", "breast_without_two_views"}


async def test_an_extra_image_the_model_cannot_read_keeps_a_clean_study_from_green(
    ctx: ServiceContext, predictor: TorchPredictor, clean: SyntheticStudy
) -> None:
    datasets = _copy(clean)
    spot = magnified(datasets[_index(datasets, "R", "CC")])
    spot.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["spot", str(spot.SOPInstanceUID)])
    _modifier(spot, ViewModifier.SPOT_COMPRESSION)
    inferred = await _light(ctx, predictor, [*datasets, spot])
    assert inferred.triage_light == "YELLOW", inferred.triage_reason
    assert "compresión focal" in inferred.triage_reason and len(inferred.breasts) == 2


async def test_an_untagged_phantom_is_caught_by_the_distribution_check(
    ctx: ServiceContext, predictor: TorchPredictor, suspicious: SyntheticStudy
) -> None:
    """A phantom whose header says it is a mammogram passes the gates; the model's own features do not."""
    datasets = _copy(suspicious)
    for view in ("CC", "MLO"):
        where = _index(datasets, "L", view)
        datasets[where] = qc_phantom(datasets[where], tagged=False)
    inferred = await _light(ctx, predictor, datasets)
    left = next(b for b in inferred.breasts if b.laterality == "L")
    assert left.in_distribution is False and left.ood_score is not None and left.ood_score > 1
    assert inferred.triage_light == "YELLOW", inferred.triage_reason
    assert "distinta de los datos de entrenamiento" in inferred.triage_reason


# --- the header gates one by one ---------------------------------------------------------------


def _gates(ds: Dataset) -> list[NotEvaluable]:
    return header_gates(ds)


def test_a_standard_view_passes_every_gate(suspicious: SyntheticStudy) -> None:
    for ds in _copy(suspicious):
        assert _gates(ds) == []
        assert preprocess_view(ds).not_evaluable == []


@pytest.mark.parametrize(
    ("modifier", "gate"),
    [
        (ViewModifier.MAGNIFICATION, NotEvaluable.MAGNIFICATION),
        (ViewModifier.SPOT_COMPRESSION, NotEvaluable.SPOT_COMPRESSION),
        (ViewModifier.IMPLANT_DISPLACED, NotEvaluable.IMPLANT_DISPLACED),
    ],
)
def test_view_modifiers_that_change_the_image_are_gated(
    suspicious: SyntheticStudy, modifier: ViewModifier, gate: NotEvaluable
) -> None:
    ds = _copy(suspicious)[0]
    _modifier(ds, modifier)
    assert _gates(ds) == [gate]


def test_a_rolled_view_is_still_evaluable(suspicious: SyntheticStudy) -> None:
    ds = _copy(suspicious)[0]
    _modifier(ds, ViewModifier.ROLLED_LATERAL)
    assert _gates(ds) == []


def test_for_processing_needs_a_usable_window(suspicious: SyntheticStudy) -> None:
    ds = _copy(suspicious)[0]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2.1"
    ds.PresentationIntentType = "FOR PROCESSING"
    assert _gates(ds) == []  # it still has its window
    del ds.WindowCenter, ds.WindowWidth
    assert _gates(ds) == [NotEvaluable.FOR_PROCESSING_WITHOUT_WINDOW]


def test_too_small_images_are_gated(suspicious: SyntheticStudy) -> None:
    ds = _copy(suspicious)[0]
    ds.Rows, ds.Columns = 200, 160
    assert NotEvaluable.TOO_SMALL in _gates(ds)
    ds = _copy(suspicious)[0]
    ds.PixelSpacing = ["0.1", "0.1"]  # 512 x 416 pixels of 0.1 mm: a 4 cm field, a spot, not a breast
    assert _gates(ds) == [NotEvaluable.TOO_SMALL]


def test_labels_are_spanish_then_english() -> None:
    assert NotEvaluable.MAGNIFICATION.label == "no evaluable por IA: vista magnificada / not evaluable by AI: magnified view"
    for gate in NotEvaluable:
        spanish, english = gate.label.split(" / ")
        assert spanish.startswith("no evaluable por IA: ") and english.startswith("not evaluable by AI: ")
