"""Segmentation metrics: IoU/Dice, the classic backend on synthetic views, and `mdd eval-seg`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from services.cli import app
from mlkit.preprocessing.evaluation import (
    dice,
    evaluate,
    iou,
    score_case,
    synthetic_cases,
)
from mlkit.preprocessing.groundtruth import AnnotatedImage, write_coco, write_labelme
from shared.imaging.pipeline import orient
from shared.imaging.segmentation import build_segmenter
from shared.settings import Settings
from shared.synth import make_study

runner = CliRunner()


@dataclass
class _Result:
    breast_mask: np.ndarray
    pectoral_mask: np.ndarray


@dataclass
class _Fixed:
    """A segmenter that answers given masks whatever the image."""

    breast: np.ndarray
    pectoral: np.ndarray
    name: str = "fixed"

    def segment(self, image01: np.ndarray, view: str | None) -> _Result:
        assert image01.shape == self.breast.shape
        return _Result(self.breast, self.pectoral)


def test_iou_and_dice_of_known_overlaps() -> None:
    a = np.zeros((10, 10), dtype=bool)
    b = np.zeros((10, 10), dtype=bool)
    a[:, :6] = True  # 60 pixels
    b[:, 3:9] = True  # 60 pixels, 30 shared, union 90
    assert iou(a, b) == pytest.approx(1 / 3)
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, a) == dice(a, a) == 1.0
    assert iou(a, ~a) == dice(a, ~a) == 0.0
    empty = np.zeros((4, 4), dtype=bool)
    assert iou(empty, empty) == dice(empty, empty) == 1.0


def test_scores_are_taken_in_the_frame_the_pipeline_segments() -> None:
    right_cc, _, right_mlo = synthetic_cases(3, seed=4, rows=256, cols=208)
    assert right_cc.key.endswith("R_CC") and right_mlo.key.endswith("R_MLO")
    truth = right_mlo.truth
    oracle = _Fixed(orient(truth.breast & ~truth.pectoral, "R"), orient(truth.pectoral, "R"))
    perfect = score_case(right_mlo, oracle)
    assert perfect.breast_iou == perfect.breast_dice == 1.0  # body region = breast | pectoral
    assert perfect.pectoral_iou == 1.0 and perfect.view == "MLO"

    unmirrored = score_case(right_mlo, _Fixed(truth.breast, truth.pectoral))
    assert unmirrored.breast_iou < 0.9 and unmirrored.pectoral_iou is not None and unmirrored.pectoral_iou < 0.5
    cc = score_case(right_cc, _Fixed(orient(right_cc.truth.breast, "R"), right_cc.truth.pectoral))
    assert cc.breast_iou == 1.0 and cc.pectoral_iou is None and cc.view == "CC"


def test_classic_backend_meets_the_targets_on_synthetic_views() -> None:
    segmenter = build_segmenter(Settings(segmentation_backend="classic"))
    report = evaluate(synthetic_cases(20, seed=100, rows=384, cols=312), segmenter, source="synthetic")
    assert len(report.images) == 20 and report.skipped == []
    assert report.pectoral_images == 10  # the MLO views
    assert report.mean_breast_iou is not None and report.mean_breast_iou >= 0.95
    assert min(s.breast_iou for s in report.images) >= 0.9
    assert report.mean_pectoral_iou is not None and report.mean_pectoral_iou >= 0.85
    assert all((s.pectoral_iou is None) == (s.view == "CC") for s in report.images)
    assert report.mean_breast_dice is not None and report.mean_breast_dice >= report.mean_breast_iou


def test_a_wrong_segmenter_scores_low() -> None:
    cases = list(synthetic_cases(4, seed=1, rows=256, cols=208))
    everything = _Fixed(np.ones((256, 208), dtype=bool), np.zeros((256, 208), dtype=bool))
    report = evaluate(cases, everything, source="synthetic")
    assert report.mean_breast_iou is not None and report.mean_breast_iou < 0.8
    assert report.mean_pectoral_iou == 0.0


def test_sam_backend_is_scored_through_the_same_path() -> None:
    import torch
    from segment_anything.build_sam import _build_sam

    from shared.imaging.sam import SamSegmenter

    torch.manual_seed(0)
    # A one-block, narrow SAM with random weights: the same code path as vit_b at a fraction of
    # the CPU time (vit_b itself is exercised by the SAM backend's own tests and the benchmark).
    tiny = _build_sam(encoder_embed_dim=64, encoder_depth=1, encoder_num_heads=2,
                      encoder_global_attn_indexes=[0], checkpoint=None)
    segmenter = SamSegmenter(model=tiny)
    cases = list(synthetic_cases(1, seed=3, rows=256, cols=208))
    report = evaluate(cases, segmenter, source="synthetic")
    assert report.backend == "sam" and report.skipped == []
    (score,) = report.images
    assert 0.0 <= score.breast_iou <= 1.0 and score.view == "CC" and score.pectoral_iou is None
    # Untrained SAM disagrees with the classic mask that prompted it: its own mask was scored.
    classic = evaluate(cases, build_segmenter(Settings()), source="synthetic").images[0]
    assert score.breast_iou != classic.breast_iou


@pytest.fixture(scope="module")
def annotated_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic studies as DICOM files, their Labelme and COCO annotations, one unannotated file."""
    root = tmp_path_factory.mktemp("anotado")
    items = []
    for seed in (21, 22):
        study = make_study(seed=seed, rows=320, cols=260, photometric="MONOCHROME1" if seed % 2 else "MONOCHROME2")
        study.save(root / "dicom" / study.accession_number)
        items += [
            AnnotatedImage(f"{study.accession_number}/{v.laterality}_{v.view}.dcm", v.breast_mask, v.pectoral_mask)
            for v in study.views
        ]
    write_labelme(items, root / "labelme")
    write_coco(items, root / "coco.json", encoding="rle")
    extra = make_study(seed=23, rows=320, cols=260).views[0]
    extra.save(root / "dicom" / "sin_anotar.dcm")
    return root


@pytest.mark.parametrize("source", ["labelme", "coco"])
def test_eval_seg_against_annotation_files(annotated_folder: Path, source: str, tmp_path: Path) -> None:
    option = ["--labelme", str(annotated_folder / "labelme")] if source == "labelme" else ["--coco", str(annotated_folder / "coco.json")]
    report_path = tmp_path / "reporte.json"
    result = runner.invoke(
        app, ["eval-seg", str(annotated_folder / "dicom"), *option, "--backend", "classic",
              "--min-iou", "0.95", "--min-pectoral-iou", "0.85", "--json", str(report_path)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "R_MLO" in result.output and "media / mean (8" in result.output
    assert "sin_anotar.dcm" in result.output and "sin anotación" in result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert len(report["images"]) == 8 and report["pectoral_images"] == 4
    assert report["mean_breast_iou"] >= 0.95 and report["mean_pectoral_iou"] >= 0.85
    assert [s["key"] for s in report["skipped"]] == ["sin_anotar.dcm"]


def test_eval_seg_synthetic_fails_when_the_minimum_is_not_met() -> None:
    ok = runner.invoke(app, ["eval-seg", "--synthetic", "4", "--rows", "256", "--cols", "208", "--min-iou", "0.9"])
    assert ok.exit_code == 0, ok.output
    assert "IoU" in ok.output and "Dice" in ok.output
    failed = runner.invoke(app, ["eval-seg", "--synthetic", "4", "--rows", "256", "--cols", "208", "--min-iou", "1.01"])
    assert failed.exit_code == 1
    assert "< 1.01" in failed.output


def test_eval_seg_explains_bad_invocations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MDD_SAM_CHECKPOINT", raising=False)
    no_source = runner.invoke(app, ["eval-seg"])
    assert no_source.exit_code == 2 and "--synthetic" in no_source.output
    no_truth = runner.invoke(app, ["eval-seg", str(tmp_path)])
    assert no_truth.exit_code == 2 and "--labelme" in no_truth.output
    sam = runner.invoke(app, ["eval-seg", "--synthetic", "1", "--backend", "sam"])
    assert sam.exit_code == 2 and "--sam-checkpoint" in sam.output
    missing = runner.invoke(app, ["eval-seg", "--synthetic", "1", "--backend", "sam",
                                  "--sam-checkpoint", str(tmp_path / "sam_vit_b_01ec64.pth")], env={"COLUMNS": "300"})
    assert missing.exit_code == 2 and "sam_vit_b_01ec64.pth" in missing.output and "Traceback" not in missing.output
    bad_type = runner.invoke(app, ["eval-seg", "--synthetic", "1", "--sam-model-type", "vit_x"], env={"COLUMNS": "300"})
    assert bad_type.exit_code == 2 and "sam_model_type" in bad_type.output


def test_eval_seg_compares_the_seed_preset_with_the_project_backend() -> None:
    from typer.testing import CliRunner

    from services.cli import app

    result = CliRunner().invoke(app, ["eval-seg", "--synthetic", "4", "--backend", "classic", "--compare", "seed"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Comparación / comparison: classic" in result.output and "vs seed" in result.output
