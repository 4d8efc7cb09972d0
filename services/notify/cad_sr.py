"""The Mammography CAD SR (SOP class 1.2.840.10008.5.1.4.1.1.88.50) of a study's AI results.

Content tree (PS3.16 TID 4000 and the templates it includes), built from highdicom content items:

- root CONTAINER *Mammography CAD Report* with its language (TID 1204: Spanish, Mexico);
- *Image Library* (TID 4020): every source image with its laterality, view and view modifiers
  (CID 6022, 4014, 4015), Patient Orientation, study date and time and pixel spacing;
- *CAD Processing and Findings Summary* (TID 4001) with its impression (TID 4002: BI-RADS
  assessment and probability of cancer per breast, the triage light and reason as Impression
  Description, the algorithm, TID 4019, with Algorithm Family *Artificial Intelligence*), the
  project's coded statements (demonstration only, trained on synthetic images, not clinically
  validated) and, inferred from it, one *Individual Impression/Recommendation* (TID 4003) per
  breast holding its *Single Image Findings* (TID 4006): the regions where the model looked, each
  a *Selected region* with its centre and closed outline on its image, and the breast
  composition (TID 4007, ACR density as CID 6000);
- *Summary of Detections* and *Summary of Analyses* (TID 4015-4018): what ran, on which images.

Regions are presented (Rendering Intent *Presentation Required*) when the triage light is RED,
offered (*Presentation Optional*) when it is YELLOW; the infer service gives regions only for
breasts it does not call low suspicion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from highdicom.sr.sop import _SR  # highdicom has no public Mammography CAD SR class; its SR base writes the document modules
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import MammographyCADSRStorage

from shared.dicom_vocabulary import Laterality, laterality_from_dataset, projection_from_dataset, view_modifiers_from_dataset
from shared.events import BreastResult, ImageRegion, StudyInferred
from services.notify.result_codes import (
    ARTIFICIAL_INTELLIGENCE,
    BIRADS_CODES,
    DENSITY_CODES,
    RESULTS_MANUFACTURER,
    coded,
    impression_text,
    mdd_coding_scheme,
    standing_statements,
)

Rel = hd.sr.RelationshipTypeValues
SPANISH = hd.sr.CodedConcept("es", "RFC5646", "Spanish")
MEXICO = hd.sr.CodedConcept("MX", "ISO3166_1", "Mexico")
PERCENT = hd.sr.CodedConcept("%", "UCUM", "Percent")
MILLIMETRE = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
SIDE_CODES = {Laterality.RIGHT: coded(codes.SCT.RightBreast), Laterality.LEFT: coded(codes.SCT.LeftBreast)}
REQUIRED = coded(codes.DCM.PresentationRequiredRenderingDeviceIsExpectedToPresent)
OPTIONAL = coded(codes.DCM.PresentationOptionalRenderingDeviceMayPresent)


class MammographyCADSR(_SR):
    """A Mammography CAD SR document: highdicom's SR document modules around a TID 4000 content tree."""

    def __init__(self, evidence: Sequence[Dataset], content: Dataset, **kwargs: object) -> None:
        super().__init__(evidence=evidence, content=content, sop_class_uid=MammographyCADSRStorage, **kwargs)  # type: ignore[arg-type]
        _drop_image_names(self)


#: Stand-in concept name of IMAGE items, which the templates leave unnamed (highdicom needs one while building).
_UNNAMED_IMAGE = codes.DCM.SourceImageForImageProcessingOperation


def _drop_image_names(item: Dataset) -> None:
    """Remove the stand-in concept name from every IMAGE item below ``item`` (PS3.3 C.17.3.2.1: optional there)."""
    for child in item.get("ContentSequence", []):
        names = child.get("ConceptNameCodeSequence")
        if child.ValueType == "IMAGE" and names and names[0].CodeValue == _UNNAMED_IMAGE.value:
            del child.ConceptNameCodeSequence
        _drop_image_names(child)


@dataclass(frozen=True)
class CadOptions:
    """Where the document goes and what names it (UIDs, series, equipment)."""

    series_uid: str
    sop_uid: str
    series_number: int
    manufacturer_model_name: str
    software_versions: list[str]
    series_description: str


def _items(*items: Dataset) -> hd.sr.ContentSequence:
    return hd.sr.ContentSequence(list(items))


def _with(item: Dataset, *children: Dataset) -> Dataset:
    """``item`` with ``children`` as its content (appended to any it already has)."""
    if children:
        existing = list(item.get("ContentSequence", []))
        item.ContentSequence = hd.sr.ContentSequence([*existing, *children])
    return item


def _code(name: hd.sr.CodedConcept, value: hd.sr.CodedConcept, relationship: Rel) -> hd.sr.CodeContentItem:
    return hd.sr.CodeContentItem(name=name, value=value, relationship_type=relationship)


def _percent(name: hd.sr.CodedConcept, fraction: float, relationship: Rel) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(name=name, value=round(100.0 * fraction, 2), unit=PERCENT, relationship_type=relationship)


def _image(header: Dataset, relationship: Rel) -> hd.sr.ImageContentItem:
    """An IMAGE content item without concept name (TID 4020 row 1, SELECTED FROM targets)."""
    return hd.sr.ImageContentItem(
        name=_UNNAMED_IMAGE,  # removed once the document is built
        referenced_sop_class_uid=str(header.SOPClassUID),
        referenced_sop_instance_uid=str(header.SOPInstanceUID),
        relationship_type=relationship,
    )


def algorithm_identification(event: StudyInferred, relationship: Rel) -> list[Dataset]:
    """TID 4019: name, version, family (Artificial Intelligence) and parameters (training data)."""
    return [
        hd.sr.TextContentItem(name=coded(codes.DCM.AlgorithmName), value=event.model_name, relationship_type=relationship),
        hd.sr.TextContentItem(name=coded(codes.DCM.AlgorithmVersion), value=event.model_version, relationship_type=relationship),
        _code(coded(codes.DCM.AlgorithmFamily), ARTIFICIAL_INTELLIGENCE, relationship),
        hd.sr.TextContentItem(
            name=coded(codes.DCM.AlgorithmParameters),
            value=f"Entrenado con / trained on: {event.model_trained_on}"[:1024],
            relationship_type=relationship,
        ),
    ]


def image_library_entry(header: Dataset) -> Dataset:
    """TID 4020: one source image with its acquisition context."""
    context: list[Dataset] = []
    laterality = laterality_from_dataset(header)
    if laterality is not None:
        context.append(_code(coded(codes.DCM.ImageLaterality), SIDE_CODES[laterality], Rel.HAS_ACQ_CONTEXT))
    projection = projection_from_dataset(header)
    if projection is not None:
        view = _code(coded(codes.DCM.ImageView), coded(projection.code), Rel.HAS_ACQ_CONTEXT)
        modifiers = [
            _code(coded(codes.DCM.ImageViewModifier), coded(modifier.code), Rel.HAS_CONCEPT_MOD)
            for modifier in sorted(view_modifiers_from_dataset(header), key=lambda m: m.value)
        ]
        context.append(_with(view, *modifiers))
    orientation = [str(value) for value in (header.get("PatientOrientation") or [])]
    if len(orientation) == 2 and all(orientation):
        for name, value in zip((codes.DCM.PatientOrientationRow, codes.DCM.PatientOrientationColumn), orientation):
            context.append(hd.sr.TextContentItem(name=coded(name), value=value, relationship_type=Rel.HAS_ACQ_CONTEXT))
    if header.get("StudyDate"):
        context.append(hd.sr.DateContentItem(name=coded(codes.DCM.StudyDate), value=str(header.StudyDate), relationship_type=Rel.HAS_ACQ_CONTEXT))
    if header.get("StudyTime"):
        context.append(hd.sr.TimeContentItem(name=coded(codes.DCM.StudyTime), value=str(header.StudyTime), relationship_type=Rel.HAS_ACQ_CONTEXT))
    spacing = header.get("ImagerPixelSpacing") or header.get("PixelSpacing")
    if spacing is not None and len(spacing) == 2:
        for name, value in ((codes.DCM.HorizontalPixelSpacing, spacing[1]), (codes.DCM.VerticalPixelSpacing, spacing[0])):
            context.append(hd.sr.NumContentItem(name=coded(name), value=float(value), unit=MILLIMETRE, relationship_type=Rel.HAS_ACQ_CONTEXT))
    return _with(_image(header, Rel.CONTAINS), *context)


def _breast_body(event: StudyInferred, breast: BreastResult, relationship: Rel) -> list[Dataset]:
    """TID 4002 rows for one breast: its BI-RADS assessment and probability of cancer, each with its side."""
    side = SIDE_CODES[Laterality(breast.laterality)]
    laterality = _code(coded(codes.SCT.Laterality), side, Rel.HAS_CONCEPT_MOD)
    assessment = _with(_code(coded(codes.DCM.AssessmentCategory), BIRADS_CODES[breast.birads], relationship), laterality)
    probability = _with(
        _percent(coded(codes.DCM.ProbabilityOfCancer), breast.malignancy_score, relationship),
        _code(coded(codes.SCT.Laterality), side, Rel.HAS_CONCEPT_MOD),
    )
    return [assessment, probability]


def _region_finding(event: StudyInferred, region: ImageRegion, header: Dataset, score: float, intent: hd.sr.CodedConcept) -> Dataset:
    """TID 4006: a Selected region of one image with its centre and closed outline (TID 4021)."""
    center = hd.sr.ScoordContentItem(
        name=coded(codes.DCM.Center),
        graphic_type=hd.sr.GraphicTypeValues.POINT,
        graphic_data=np.array([region.center], dtype=np.float32),
        relationship_type=Rel.HAS_PROPERTIES,
    )
    outline = hd.sr.ScoordContentItem(
        name=coded(codes.DCM.Outline),
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array(region.outline, dtype=np.float32),
        relationship_type=Rel.HAS_PROPERTIES,
    )
    return _with(
        _code(coded(codes.DCM.SingleImageFinding), coded(codes.DCM.SelectedRegion), Rel.CONTAINS),
        _code(coded(codes.DCM.RenderingIntent), intent, Rel.HAS_CONCEPT_MOD),
        *algorithm_identification(event, Rel.HAS_PROPERTIES)[:2],
        _percent(coded(codes.DCM.CertaintyOfFinding), score * region.activation, Rel.HAS_PROPERTIES),
        _with(center, _image(header, Rel.SELECTED_FROM)),
        _with(outline, _image(header, Rel.SELECTED_FROM)),
    )


def _composition_finding(event: StudyInferred, breast: BreastResult) -> Dataset:
    """TID 4006 with TID 4007: the breast composition (ACR density) the model estimated for the breast."""
    side = SIDE_CODES[Laterality(breast.laterality)]
    return _with(
        _code(coded(codes.DCM.SingleImageFinding), coded(codes.SCT.BreastComposition), Rel.CONTAINS),
        _code(coded(codes.DCM.RenderingIntent), OPTIONAL, Rel.HAS_CONCEPT_MOD),
        _code(coded(codes.SCT.Laterality), side, Rel.HAS_CONCEPT_MOD),
        *algorithm_identification(event, Rel.HAS_PROPERTIES)[:2],
        _code(coded(codes.SCT.BreastComposition), DENSITY_CODES[breast.density], Rel.HAS_PROPERTIES),
    )


def _individual_impression(event: StudyInferred, breast: BreastResult, headers: dict[str, Dataset]) -> Dataset:
    """TID 4003: one breast's impression, its regions and its composition."""
    intent = REQUIRED if event.triage_light == "RED" else OPTIONAL
    regions = [r for r in event.regions if r.laterality == breast.laterality and r.sop_instance_uid in headers]
    container = hd.sr.ContainerContentItem(
        name=coded(codes.DCM.IndividualImpressionRecommendation), is_content_continuous=False, relationship_type=Rel.INFERRED_FROM
    )
    return _with(
        container,
        _code(coded(codes.DCM.RenderingIntent), intent, Rel.HAS_CONCEPT_MOD),
        *_breast_body(event, breast, Rel.CONTAINS),
        *algorithm_identification(event, Rel.CONTAINS)[:2],
        *[_region_finding(event, region, headers[region.sop_instance_uid], breast.malignancy_score, intent) for region in regions],
        _composition_finding(event, breast),
    )


def _performed(event: StudyInferred, concept: hd.sr.CodedConcept, value: hd.sr.CodedConcept, headers: Sequence[Dataset]) -> Dataset:
    """TID 4017 / TID 4018: one detection or analysis performed, its algorithm and the images it used."""
    return _with(
        _code(concept, value, Rel.CONTAINS),
        *algorithm_identification(event, Rel.HAS_PROPERTIES),
        *[_image(header, Rel.HAS_PROPERTIES) for header in headers],
    )


def _summary(name: hd.sr.CodedConcept, container: hd.sr.CodedConcept, performed: list[Dataset]) -> Dataset:
    """Summary of Detections or of Analyses: Succeeded, inferred from what was performed."""
    successful = hd.sr.ContainerContentItem(name=container, is_content_continuous=False, relationship_type=Rel.INFERRED_FROM)
    return _with(_code(name, coded(codes.DCM.Succeeded), Rel.CONTAINS), _with(successful, *performed))


def cad_content(event: StudyInferred, headers: Sequence[Dataset]) -> Dataset:
    """The TID 4000 content tree (its root container) for the event's results on ``headers``."""
    by_uid = {str(header.SOPInstanceUID): header for header in headers}
    has_findings = bool(event.breasts)
    summary_value = (
        codes.DCM.AllAlgorithmsSucceededWithFindings if has_findings else codes.DCM.AllAlgorithmsSucceededWithoutFindings
    )
    body: list[Dataset] = []
    for breast in event.breasts:
        body += _breast_body(event, breast, Rel.HAS_PROPERTIES)
    body.append(hd.sr.TextContentItem(name=coded(codes.DCM.ImpressionDescription), value=impression_text(event)[:1024], relationship_type=Rel.HAS_PROPERTIES))
    body += algorithm_identification(event, Rel.HAS_PROPERTIES)
    statements = [_code(question, answer, Rel.HAS_PROPERTIES) for question, answer in standing_statements(event)]
    summary = _with(
        _code(coded(codes.DCM.CADProcessingAndFindingsSummary), coded(summary_value), Rel.CONTAINS),
        *body,
        *statements,
        *[_individual_impression(event, breast, by_uid) for breast in event.breasts],
    )
    library = _with(
        hd.sr.ContainerContentItem(name=coded(codes.DCM.ImageLibrary), is_content_continuous=False, relationship_type=Rel.CONTAINS),
        *[image_library_entry(header) for header in headers],
    )
    detections = _summary(
        coded(codes.DCM.SummaryOfDetections),
        coded(codes.DCM.SuccessfulDetections),
        [_performed(event, coded(codes.DCM.DetectionPerformed), coded(codes.DCM.SelectedRegion), headers)],
    )
    analyses = _summary(
        coded(codes.DCM.SummaryOfAnalyses),
        coded(codes.DCM.SuccessfulAnalyses),
        [
            _performed(event, coded(codes.DCM.AnalysisPerformed), coded(codes.DCM.OverallImpressionRecommendationAnalysis), headers),
            _performed(event, coded(codes.DCM.AnalysisPerformed), coded(codes.SCT.BreastCompositionAnalysis), headers),
        ],
    )
    language = _with(
        _code(coded(codes.DCM.LanguageOfContentItemAndDescendants), SPANISH, Rel.HAS_CONCEPT_MOD),
        _code(coded(codes.DCM.CountryOfLanguage), MEXICO, Rel.HAS_CONCEPT_MOD),
    )
    root = hd.sr.ContainerContentItem(name=coded(codes.DCM.MammographyCADReport), is_content_continuous=False, template_id="4000")
    return _with(root, language, library, summary, detections, analyses)


def build_cad_sr(event: StudyInferred, headers: Sequence[Dataset], options: CadOptions) -> MammographyCADSR:
    """The Mammography CAD SR of the study's AI results, in the study of ``headers``."""
    return MammographyCADSR(
        evidence=list(headers),
        content=cad_content(event, headers),
        series_instance_uid=options.series_uid,
        series_number=options.series_number,
        sop_instance_uid=options.sop_uid,
        instance_number=1,
        manufacturer=RESULTS_MANUFACTURER,
        manufacturer_model_name=options.manufacturer_model_name,
        software_versions=options.software_versions,
        is_complete=True,
        is_final=False,
        series_description=options.series_description,
        institution_name=headers[0].get("InstitutionName") or None,
        specific_character_set="ISO_IR 192",
        coding_schemes=[mdd_coding_scheme()],
    )
