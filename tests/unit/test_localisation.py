"""The model's own localisation: the regions its malignancy head drives land on the lesion, in stored-image pixels."""

from __future__ import annotations

import pytest
from matplotlib.path import Path as Polygon

from shared.synth import make_study
from services.infer.localisation import Localiser, ViewInput, to_image
from services.infer.predictor import TorchPredictor
from services.preprocess.handlers import view_geometry
from shared.imaging.pipeline import preprocess_view
from shared.events import ViewGeometry


@pytest.fixture(scope="module")
def localiser() -> Localiser:
    return Localiser(TorchPredictor.from_setting(None).model)  # the shipped synthetic-data model


@pytest.mark.parametrize("seed", [11, 23])
def test_a_region_of_each_view_of_the_breast_with_a_mass_covers_the_mass(localiser: Localiser, seed: int) -> None:
    study = make_study(seed=seed, finding="mass", finding_laterality="L")
    inputs, masses = [], {}
    for view in (v for v in study.views if v.laterality == "L"):
        result = preprocess_view(view.dataset)
        geometry = view_geometry(result)
        assert geometry is not None
        inputs.append(ViewInput(str(view.dataset.SOPInstanceUID), view.view, result.model_input, geometry))
        row, col = view.findings[0].center_rc
        masses[str(view.dataset.SOPInstanceUID)] = (col + 0.5, row + 0.5)
    regions = localiser.regions("L", inputs)
    assert {r.view for r in regions} == {"CC", "MLO"}
    for sop_uid, mass in masses.items():
        outlines = [Polygon(r.outline) for r in regions if r.sop_instance_uid == sop_uid]
        assert any(outline.contains_point(mass) for outline in outlines), f"no region covers the mass at {mass}"
        assert all(r.outline[0] == r.outline[-1] for r in regions)


def test_input_points_map_back_through_crop_and_mirroring() -> None:
    geometry = ViewGeometry(rows=1000, columns=800, top=100, bottom=436, left=50, right=274, mirrored=False)
    assert to_image(geometry, [(0, 0), (223, 335)]) == [(50.5, 100.5), (273.5, 435.5)]
    mirrored = geometry.model_copy(update={"mirrored": True})
    assert to_image(mirrored, [(0, 0)]) == [(749.5, 100.5)]


async def test_the_infer_service_outlines_where_it_looked_only_for_the_breast_it_does_not_call_low_suspicion(settings) -> None:  # type: ignore[no-untyped-def]
    from shared.events import StudyCompleted, ViewRef, producer
    from shared.runtime import build_context
    from services.infer.handlers import InferHandlers
    from services.preprocess.handlers import PreprocessHandlers

    ctx = build_context(settings)
    study = make_study(seed=11, finding="mass", finding_laterality="L")
    refs = []
    for view in study.views:
        ds = view.dataset
        key = f"{study.hospital_id}/{study.study_uid}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        ctx.store.put_bytes(settings.bucket_dicom, key, view.to_bytes(), "application/dicom")
        refs.append(ViewRef(sop_instance_uid=str(ds.SOPInstanceUID), series_instance_uid=str(ds.SeriesInstanceUID), object_key=key,
                            laterality=view.laterality, view_position=view.view))
    completed = StudyCompleted(study_uid=study.study_uid, hospital_id=study.hospital_id, correlation_id="c", producer=producer("ingest"),
                               reason="all_views", views=refs)
    preprocessed = await PreprocessHandlers(ctx).on_study_completed(completed)
    assert all(v.geometry is not None for v in preprocessed.views)
    inferred = await InferHandlers(ctx, TorchPredictor.from_setting(None)).on_study_preprocessed(preprocessed)
    assert inferred.triage_light == "RED"
    left = {str(v.dataset.SOPInstanceUID) for v in study.views if v.laterality == "L"}
    assert inferred.regions and {r.sop_instance_uid for r in inferred.regions} == left
    assert {r.laterality for r in inferred.regions} == {"L"}  # the right breast is low suspicion: no marks
