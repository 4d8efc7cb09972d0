"""Which triage thresholds the infer service applies: hospital, explicit settings, checkpoint, default."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from services.infer.checkpoint import save_checkpoint
from services.infer.handlers import InferHandlers
from services.infer.model import TwoViewNet
from services.infer.predictor import SHIPPED_WEIGHTS, TorchPredictor, resolve_weights_path
from services.infer.thresholds import resolve_thresholds
from shared.settings import Settings


def test_calibrated_thresholds_apply_unless_the_hospital_sets_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MDD_TRIAGE_HIGH", "MDD_TRIAGE_LOW"):
        monkeypatch.delenv(name, raising=False)
    calibrated = (0.31, 0.07)
    default = Settings(_env_file=None)  # type: ignore[call-arg]
    assert resolve_thresholds(default, calibrated).model_dump() == {"high": 0.31, "low": 0.07, "origin": "checkpoint"}
    assert resolve_thresholds(default, None).model_dump() == {"high": 0.5, "low": 0.2, "origin": "default"}

    monkeypatch.setenv("MDD_TRIAGE_HIGH", "0.6")
    explicit = Settings(_env_file=None)  # type: ignore[call-arg]
    assert resolve_thresholds(explicit, calibrated).model_dump() == {"high": 0.6, "low": 0.2, "origin": "settings"}
    assert resolve_thresholds(Settings(triage_low=0.1), calibrated).origin == "settings"

    per_hospital = SimpleNamespace(
        triage_hospital_thresholds={"HGE-ENSENADA": {"high": 0.4, "low": 0.1}},
        triage_high=0.5, triage_low=0.2, model_fields_set=set(),
    )
    assert resolve_thresholds(per_hospital, calibrated, "HGE-ENSENADA").model_dump() == {
        "high": 0.4, "low": 0.1, "origin": "hospital"}
    assert resolve_thresholds(per_hospital, calibrated, "OTRO").origin == "checkpoint"


def test_infer_handlers_use_the_checkpoint_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MDD_TRIAGE_HIGH", "MDD_TRIAGE_LOW"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "m.pt"
    save_checkpoint(TwoViewNet("small_cnn"), path, {"model_name": "m", "version": "1", "trained_on": "fantomas sintéticos",
                                                     "triage_high": "0.3300", "triage_low": "0.0500"})
    predictor = TorchPredictor(path)
    assert predictor.calibrated_thresholds == (0.33, 0.05)
    handlers = InferHandlers(SimpleNamespace(settings=Settings(_env_file=None)), predictor)  # type: ignore[arg-type, call-arg]
    assert (handlers.thresholds.high, handlers.thresholds.low) == (0.33, 0.05)
    hospital = InferHandlers(SimpleNamespace(settings=Settings(triage_high=0.7, triage_low=0.3)), predictor)  # type: ignore[arg-type]
    assert (hospital.thresholds.high, hospital.thresholds.low) == (0.7, 0.3)


def test_model_weights_setting_picks_shipped_explicit_or_untrained(tmp_path: Path) -> None:
    assert resolve_weights_path(None) == SHIPPED_WEIGHTS
    assert resolve_weights_path("untrained") is None and resolve_weights_path("NONE") is None
    assert resolve_weights_path(tmp_path / "x.pt") == tmp_path / "x.pt"
    untrained = TorchPredictor.from_setting("untrained", backbone="small_cnn")
    assert untrained.trained is False and untrained.calibrated_thresholds is None
