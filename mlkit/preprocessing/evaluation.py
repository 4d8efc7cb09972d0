"""Evaluación de la segmentación / segmentation metrics against ground truth.

Every backend (``classic``, ``sam``) is measured the same way: each DICOM view goes through the
service's own per-view function (:func:`shared.imaging.pipeline.preprocess_view`: decoding,
orientation, segmentation) with the segmenter built from the settings; its masks are compared, in
the oriented frame, with the reference masks mirrored the same way. Two regions are scored:

- ``breast``: the whole body region (breast tissue plus pectoral muscle), on every view;
- ``pectoral``: the pectoral muscle, on views whose reference has one, except CC views.

References come from Labelme, COCO (:mod:`mlkit.preprocessing.groundtruth`) or the synthetic
generator (:mod:`shared.synth`), which knows its masks exactly.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Final

import numpy as np
import pydicom
from pydantic import BaseModel, Field, computed_field

from mlkit.preprocessing.groundtruth import GroundTruth, find_truth
from shared.imaging.pipeline import orient, preprocess_view, to_display
from shared.imaging.segmentation import Segmenter
from shared.synth import STORED_CHEST_WALL_SIDE

#: Breast densities (fibroglandular fraction) cycled through the synthetic studies.
SYNTHETIC_DENSITIES: Final[tuple[float, ...]] = (0.1, 0.3, 0.5, 0.7, 0.9)
DICOM_SUFFIXES: Final[frozenset[str]] = frozenset({".dcm", ".dicom", ".dic", ""})


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = int(np.count_nonzero(predicted | truth))
    return 1.0 if union == 0 else int(np.count_nonzero(predicted & truth)) / union


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient (F1) of two boolean masks (1.0 when both are empty)."""
    total = int(np.count_nonzero(predicted)) + int(np.count_nonzero(truth))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(predicted & truth)) / total


class ImageScore(BaseModel):
    """Metrics of one image."""

    key: str = Field(description="Imagen (ruta relativa o estudio/vista) / image")
    laterality: str | None = None
    view: str | None = None
    breast_iou: float
    breast_dice: float
    pectoral_iou: float | None = Field(None, description="Solo vistas MLO / MLO views only")
    pectoral_dice: float | None = None
    seconds: float = Field(description="Tiempo del preprocesamiento de la vista / per-view preprocessing time")


class SkippedImage(BaseModel):
    """An image that could not be scored, and why."""

    key: str
    reason: str


class EvaluationReport(BaseModel):
    """Per-image metrics and their means for one backend on one source."""

    backend: str
    source: str
    images: list[ImageScore] = Field(default_factory=list)
    skipped: list[SkippedImage] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean_breast_iou(self) -> float | None:
        """Mean breast IoU over the scored images."""
        return fmean(s.breast_iou for s in self.images) if self.images else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean_breast_dice(self) -> float | None:
        """Mean breast Dice over the scored images."""
        return fmean(s.breast_dice for s in self.images) if self.images else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pectoral_images(self) -> int:
        """How many images had their pectoral muscle scored (MLO views)."""
        return sum(s.pectoral_iou is not None for s in self.images)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean_pectoral_iou(self) -> float | None:
        """Mean pectoral IoU over the MLO views scored."""
        values = [s.pectoral_iou for s in self.images if s.pectoral_iou is not None]
        return fmean(values) if values else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean_pectoral_dice(self) -> float | None:
        """Mean pectoral Dice over the MLO views scored."""
        values = [s.pectoral_dice for s in self.images if s.pectoral_dice is not None]
        return fmean(values) if values else None


@dataclass(frozen=True)
class EvaluationCase:
    """One image to score: its dataset and its reference masks (stored frame)."""

    key: str
    dataset: pydicom.Dataset
    truth: GroundTruth


def _mirrored(dataset: pydicom.Dataset, laterality: str | None) -> bool:
    """Whether the pipeline mirrored this view (right breasts; a guess from the image otherwise)."""
    if laterality in STORED_CHEST_WALL_SIDE:
        return STORED_CHEST_WALL_SIDE[laterality] == "right"
    image = to_display(dataset)
    return not np.array_equal(orient(image, None), image)


def score_case(case: EvaluationCase, segmenter: Segmenter) -> ImageScore:
    """Run the service's per-view function on one case and compare its masks with the reference.

    The predicted body region is ``mask | pectoral_mask`` whatever the backend's own convention;
    the reference is mirrored exactly as the image was. ``seconds`` is the whole per-view
    function (decoding, segmentation, crop, colour map, model input).
    """
    rows, cols = int(case.dataset.Rows), int(case.dataset.Columns)
    if (rows, cols) != case.truth.shape:
        raise ValueError(
            f"la referencia mide {case.truth.shape} y la imagen {(rows, cols)} / "
            f"reference is {case.truth.shape}, image is {(rows, cols)}"
        )
    started = time.perf_counter()
    result = preprocess_view(case.dataset, segmenter)
    seconds = time.perf_counter() - started
    mirrored = _mirrored(case.dataset, result.laterality)

    def as_oriented(mask: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(mask[:, ::-1]) if mirrored else mask

    predicted_pectoral = (
        np.zeros(result.mask.shape, dtype=bool) if result.pectoral_mask is None
        else np.asarray(result.pectoral_mask, dtype=bool)
    )
    predicted_breast = np.asarray(result.mask, dtype=bool) | predicted_pectoral
    truth_breast, truth_pectoral = as_oriented(case.truth.breast), as_oriented(case.truth.pectoral)
    score_pectoral = result.view != "CC" and bool(truth_pectoral.any())
    return ImageScore(
        key=case.key,
        laterality=result.laterality,
        view=result.view,
        breast_iou=iou(predicted_breast, truth_breast),
        breast_dice=dice(predicted_breast, truth_breast),
        pectoral_iou=iou(predicted_pectoral, truth_pectoral) if score_pectoral else None,
        pectoral_dice=dice(predicted_pectoral, truth_pectoral) if score_pectoral else None,
        seconds=seconds,
    )


def synthetic_cases(count: int, seed: int = 0, rows: int = 512, cols: int = 416) -> Iterator[EvaluationCase]:
    """``count`` synthetic views (four per study, seeds ``seed, seed+1, ...``) with exact masks.

    Studies vary as real ones do: the breast density cycles through :data:`SYNTHETIC_DENSITIES`,
    every other study is MONOCHROME1, and every third carries a mass or calcifications. Each
    view is written to DICOM bytes and read back, so decoding is part of what is measured.
    """
    from shared.synth import make_study

    produced = 0
    study_seed = seed
    while produced < count:
        index = study_seed - seed
        finding = (None, "mass", "calcifications")[index % 3]
        study = make_study(
            seed=study_seed,
            rows=rows,
            cols=cols,
            density=SYNTHETIC_DENSITIES[index % len(SYNTHETIC_DENSITIES)],
            photometric="MONOCHROME1" if index % 2 else "MONOCHROME2",
            finding=finding,  # type: ignore[arg-type]
            finding_laterality="R" if index % 2 else "L",
        )
        for view in study.views[: count - produced]:
            key = f"{study.accession_number}/{view.laterality}_{view.view}"
            dataset = pydicom.dcmread(io.BytesIO(view.to_bytes()))
            truth = GroundTruth(key, view.breast_mask, view.pectoral_mask, str(dataset.SOPInstanceUID))
            yield EvaluationCase(key, dataset, truth)
            produced += 1
        study_seed += 1


def dicom_files(folder: Path) -> list[Path]:
    """DICOM files under ``folder`` (recursively): ``.dcm``/``.dicom``/``.dic`` or no extension."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in DICOM_SUFFIXES and not p.name.startswith(".")
    )


def folder_cases(
    folder: Path, truths: dict[str, GroundTruth], skipped: list[SkippedImage]
) -> Iterator[EvaluationCase]:
    """The DICOM files of ``folder`` that have a reference; the others go to ``skipped`` with the reason."""
    for path in dicom_files(folder):
        key = path.relative_to(folder).as_posix()
        try:
            dataset = pydicom.dcmread(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not fatal
            skipped.append(SkippedImage(key=key, reason=f"no es DICOM legible / unreadable DICOM: {exc}"))
            continue
        truth = find_truth(truths, key, str(dataset.get("SOPInstanceUID", "") or "") or None)
        if truth is None:
            skipped.append(SkippedImage(key=key, reason="sin anotación / no annotation"))
            continue
        yield EvaluationCase(key, dataset, truth)


def evaluate(
    cases: Iterable[EvaluationCase],
    segmenter: Segmenter,
    *,
    source: str,
    skipped: list[SkippedImage] | None = None,
    on_image: Callable[[ImageScore | SkippedImage], None] | None = None,
) -> EvaluationReport:
    """Score every case; a case that fails is reported as skipped with its error.

    ``skipped`` may be the list a case generator such as :func:`folder_cases` fills while it
    runs; it is read after the last case.
    """
    skipped = skipped if skipped is not None else []
    images: list[ImageScore] = []
    for case in cases:
        outcome: ImageScore | SkippedImage
        try:
            outcome = score_case(case, segmenter)
            images.append(outcome)
        except Exception as exc:  # noqa: BLE001 - one bad image must not hide the others' scores
            outcome = SkippedImage(key=case.key, reason=f"{type(exc).__name__}: {exc}")
            skipped.append(outcome)
        if on_image is not None:
            on_image(outcome)
    return EvaluationReport(backend=segmenter.name, source=source, images=images, skipped=list(skipped))


__all__ = [
    "EvaluationCase",
    "EvaluationReport",
    "ImageScore",
    "SkippedImage",
    "dice",
    "dicom_files",
    "evaluate",
    "folder_cases",
    "iou",
    "score_case",
    "synthetic_cases",
]
