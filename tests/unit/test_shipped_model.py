"""The checkpoint in the repository: loads by default, says what it is, and meets its targets
on held-out synthetic studies drawn from a seed never used in training or validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.infer.checkpoint import load_checkpoint
from services.infer.predictor import SHIPPED_WEIGHTS, BreastInputs, TorchPredictor
from mlkit.training.data import load_breasts
from mlkit.evaluation.evaluate import evaluate_weights
from mlkit.training.synthetic import synthetic_manifest_rows
from services.infer.triage import TriageThresholds, triage_light
from shared.synth import SyntheticStudy, make_study

HELD_OUT_SEED = 31337  # training used data seed 2024, its held-out report 9001
HELD_OUT_STUDIES = 40


def test_shipped_checkpoint_is_small_and_describes_itself() -> None:
    assert SHIPPED_WEIGHTS.is_file()
    assert SHIPPED_WEIGHTS.stat().st_size <= 25 * 1024 * 1024
    _, meta = load_checkpoint(SHIPPED_WEIGHTS)
    assert "sintéticos" in meta["trained_on"] and "synthetic" in meta["trained_on"]
    assert "no es un dispositivo clínico" in meta["disclaimer"] and "not a clinical device" in meta["disclaimer"]
    assert 0.0 < float(meta["triage_low"]) <= float(meta["triage_high"]) < 1.0
    card = (SHIPPED_WEIGHTS.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert meta["triage_high"] in card and "not a clinical device" in card


def test_predictor_loads_the_shipped_checkpoint_when_no_weights_are_configured() -> None:
    predictor = TorchPredictor.from_setting(None)
    assert predictor.trained is True
    assert predictor.calibrated_thresholds is not None
    assert "synthetic" in predictor.trained_on


def test_shipped_model_meets_its_targets_on_held_out_synthetic_studies(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rows = synthetic_manifest_rows(tmp_path / "held-out", HELD_OUT_STUDIES, HELD_OUT_SEED, progress=False)
    data = load_breasts(rows, progress=False)
    assert 0 < int(data.malignancy.sum()) < len(data)
    metrics = evaluate_weights(SHIPPED_WEIGHTS, data).metrics
    assert metrics.malignancy_auc >= 0.95, metrics.headline()
    assert metrics.density_accuracy >= 0.80, metrics.headline()


def _lights(study: SyntheticStudy, predictor: TorchPredictor) -> str:
    from shared.imaging.pipeline import preprocess_view

    inputs = {(v.laterality, v.view): preprocess_view(v.dataset).model_input for v in study.views}
    breasts = [BreastInputs(side, cc=inputs[(side, "CC")], mlo=inputs[(side, "MLO")]) for side in ("R", "L")]
    assert predictor.calibrated_thresholds is not None
    high, low = predictor.calibrated_thresholds
    light, _ = triage_light(predictor.predict(breasts), TriageThresholds(high=high, low=low))
    return light


@pytest.mark.parametrize(
    ("kwargs", "light"),
    [
        ({"seed": 7, "finding": "mass", "finding_laterality": "L"}, "RED"),  # the end-to-end test's study
        ({"seed": 99, "finding": "mass"}, "RED"),  # what `mdd demo` sends
        ({"seed": 12}, "GREEN"),
    ],
)
def test_plain_synthetic_studies_get_the_expected_light(kwargs: dict, light: str) -> None:
    torch.set_num_threads(1)
    assert _lights(make_study(**kwargs), TorchPredictor.from_setting(None)) == light
