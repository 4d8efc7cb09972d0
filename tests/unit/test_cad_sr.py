"""The Mammography CAD SR: image library, per-breast impressions, the model's regions as outlines, the mosaic's marks."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import MammographyCADSRStorage

from shared.events import ImageRegion, StudyInferred
from shared.runtime import build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy, make_study
from services.notify.mosaic import HEADER_ROWS, MARK_RGB, SLOTS, TILE_COLS, TILE_ROWS
from services.notify.pacs_results import build_cad, build_sc, load_sources
from tests.unit.test_pacs_results import content_items, headers, inferred, reread, store_study


@pytest.fixture(scope="module")
def study() -> SyntheticStudy:
    return make_study(seed=4611, finding="mass", finding_laterality="L", hospital_id="HGE-ENSENADA")


def with_region(study: SyntheticStudy) -> tuple[StudyInferred, ImageRegion]:
    """The RED result with one region drawn around the mass of the left CC view."""
    view = next(v for v in study.views if (v.laterality, v.view) == ("L", "CC"))
    row, col = view.findings[0].center_rc
    half = view.findings[0].radius_px + 4
    outline = [(col - half, row - half), (col + half, row - half), (col + half, row + half), (col - half, row + half), (col - half, row - half)]
    region = ImageRegion(
        sop_instance_uid=str(view.dataset.SOPInstanceUID), laterality="L", view="CC", center=(col + 0.5, row + 0.5),
        outline=[(float(x), float(y)) for x, y in outline], activation=0.8,
    )
    return inferred(study).model_copy(update={"regions": [region]}), region


def concept(item: Dataset) -> tuple[str, str] | None:
    """(scheme, code) of an item's concept name; None for the unnamed IMAGE items of the templates."""
    if "ConceptNameCodeSequence" not in item:
        return None
    code = item.ConceptNameCodeSequence[0]
    return code.CodingSchemeDesignator, code.CodeValue


def children(item: Dataset, scheme: str, value: str) -> list[Dataset]:
    return [c for c in item.get("ContentSequence", []) if concept(c) == (scheme, value)]


def test_cad_sr_is_tid_4000_with_an_image_library_of_every_view(study: SyntheticStudy) -> None:
    event, _ = with_region(study)
    cad = reread(build_cad(event, headers(study)))
    assert cad.SOPClassUID == MammographyCADSRStorage and cad.Modality == "SR"
    assert cad.ContentTemplateSequence[0].TemplateIdentifier == "4000" and concept(cad) == ("DCM", "111036")
    assert cad.ManufacturerModelName == "Mexican Deep DICOM twoview-compactcnn"
    assert list(cad.SoftwareVersions) == ["mdd 0.1.0", "twoview-compactcnn 0.1.0"]
    [library] = children(cad, "DCM", "111028")
    entries = {e.ReferencedSOPSequence[0].ReferencedSOPInstanceUID: e for e in library.ContentSequence}
    assert set(entries) == {str(v.dataset.SOPInstanceUID) for v in study.views}
    for view in study.views:
        entry = entries[str(view.dataset.SOPInstanceUID)]
        [side] = children(entry, "DCM", "111027")
        [image_view] = children(entry, "DCM", "111031")
        assert side.ConceptCodeSequence[0].CodeValue == {"R": "73056007", "L": "80248007"}[view.laterality]
        assert image_view.ConceptCodeSequence[0].CodeValue == {"CC": "399162004", "MLO": "399368009"}[view.view]


def test_cad_sr_reports_each_breast_and_outlines_the_region_on_its_own_image(study: SyntheticStudy) -> None:
    event, region = with_region(study)
    cad = reread(build_cad(event, headers(study)))
    [summary] = children(cad, "DCM", "111017")
    assert summary.ConceptCodeSequence[0].CodeValue == "111242"  # all algorithms succeeded; with findings
    impressions = children(summary, "DCM", "111034")
    assert len(impressions) == 2
    findings = [f for imp in impressions for f in children(imp, "DCM", "111059")]
    [selected] = [f for f in findings if f.ConceptCodeSequence[0].CodeValue == "111099"]  # Selected region
    [intent] = children(selected, "DCM", "111056")
    assert intent.ConceptCodeSequence[0].CodeValue == "111150"  # a RED light: presentation required
    [outline] = children(selected, "DCM", "111041")
    assert outline.GraphicType == "POLYLINE"
    points = np.array(outline.GraphicData, dtype=float).reshape(-1, 2)
    assert np.allclose(points, np.array(region.outline)) and np.allclose(points[0], points[-1])
    [target] = outline.ContentSequence
    assert target.RelationshipType == "SELECTED FROM" and target.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == region.sop_instance_uid
    [center] = children(selected, "DCM", "111010")
    assert center.GraphicType == "POINT" and np.allclose(center.GraphicData, region.center)
    compositions = [f for f in findings if f.ConceptCodeSequence[0].CodeValue == "129715009"]
    densities = sorted(children(f, "SCT", "129715009")[0].ConceptCodeSequence[0].CodeValue for f in compositions)
    assert densities == ["129717001", "129718006"]  # ACR B (right) and C (left), as CID 6000
    probabilities = {float(n.MeasuredValueSequence[0].NumericValue) for n in content_items(summary) if concept(n) == ("DCM", "111047")}
    assert probabilities == {12.0, 91.0}  # percent


def test_cad_sr_codes_the_model_as_ai_and_a_synthetic_demonstration(study: SyntheticStudy) -> None:
    cad = reread(build_cad(inferred(study), headers(study)))
    items = list(content_items(cad))
    families = {i.ConceptCodeSequence[0].CodeValue for i in items if concept(i) == ("DCM", "111000")}
    assert families == {"123110"}  # Artificial Intelligence
    local = [i for i in items if i.ValueType == "CODE" and (concept(i) or ("", ""))[0] == "99MDD"]
    answers = {i.ConceptNameCodeSequence[0].CodeValue: i.ConceptCodeSequence[0].CodeValue for i in local}
    assert answers == {"MDD0001": "MDD0002", "MDD0003": "MDD0004", "MDD0007": "MDD0008"}
    [impression] = [i for i in items if concept(i) == ("DCM", "111033")]
    assert "SEMÁFORO ROJO / RED" in impression.TextValue and "no validado clínicamente" in impression.TextValue


def test_the_mosaic_draws_the_region_over_its_view(settings: Settings, study: SyntheticStudy) -> None:
    ctx = build_context(settings)
    store_study(ctx, study)
    event, _ = with_region(study)
    pixels = reread(build_sc(event, load_sources(ctx.store, settings.bucket_dicom, event, with_views=True))).pixel_array
    marked = np.all(pixels == np.array(MARK_RGB, dtype=np.uint8), axis=-1)
    grid_row, grid_col = SLOTS[("L", "CC")]
    top, left = HEADER_ROWS + grid_row * TILE_ROWS, grid_col * TILE_COLS
    assert marked[top : top + TILE_ROWS, left : left + TILE_COLS].sum() > 40
    assert marked.sum() == marked[top : top + TILE_ROWS, left : left + TILE_COLS].sum()  # nowhere else
    plain = reread(build_sc(inferred(study), load_sources(ctx.store, settings.bucket_dicom, event, with_views=True))).pixel_array
    assert not np.all(plain == np.array(MARK_RGB, dtype=np.uint8), axis=-1).any()
