"""Evaluate a checkpoint on labelled breasts: the same metrics as training prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.infer.checkpoint import load_checkpoint, model_from_checkpoint
from services.infer.model import TwoViewNet
from mlkit.training.data import BreastSet
from mlkit.training.inference import Outputs, predict_set
from mlkit.evaluation.metrics import Metrics, compute_metrics


@dataclass
class Evaluation:
    """Metrics of one checkpoint on one set, and what the checkpoint says about itself."""

    metrics: Metrics
    outputs: Outputs
    metadata: dict[str, str]

    @property
    def thresholds(self) -> tuple[float, float] | None:
        """``(high, low)`` triage thresholds stored in the checkpoint, if it has them."""
        return stored_thresholds(self.metadata)


def stored_thresholds(metadata: dict[str, str]) -> tuple[float, float] | None:
    """``(high, low)`` from checkpoint metadata (``triage_high``/``triage_low``), or None."""
    if "triage_high" not in metadata or "triage_low" not in metadata:
        return None
    return float(metadata["triage_high"]), float(metadata["triage_low"])


def load_model(weights: Path, device: str = "cpu") -> tuple[TwoViewNet, dict[str, str]]:
    """A TwoViewNet with the checkpoint's weights (eval mode) and its metadata."""
    state, meta = load_checkpoint(weights)
    return model_from_checkpoint(state, meta).to(device).eval(), meta


def evaluate_model(model: TwoViewNet, data: BreastSet, metadata: dict[str, str], batch_size: int = 32,
                   device: str = "cpu") -> Evaluation:
    """Predict every breast of ``data`` and compute the metrics (with the stored triage thresholds)."""
    outputs = predict_set(model, data, batch_size=batch_size, device=device)
    thresholds = stored_thresholds(metadata)
    metrics = compute_metrics(
        data.malignancy,
        data.birads,
        data.density,
        outputs.scores,
        outputs.birads_probs,
        outputs.density_probs,
        thresholds=thresholds or (),
    )
    return Evaluation(metrics=metrics, outputs=outputs, metadata=metadata)


def evaluate_weights(weights: Path, data: BreastSet, batch_size: int = 32, device: str = "cpu") -> Evaluation:
    """Load ``weights`` and evaluate them on ``data``."""
    model, meta = load_model(weights, device)
    return evaluate_model(model, data, meta, batch_size, device)


__all__ = ["Evaluation", "evaluate_model", "evaluate_weights", "load_model", "stored_thresholds"]
