"""Temperature scaling of the malignancy score (Guo et al., 2017), fitted on the calibration split.

One scalar ``T`` divides the malignancy logit so that the scores' negative log-likelihood on
breasts the network was not trained or selected on is lowest. It is folded into the malignancy
head (weights and bias divided by ``T``), so every backend and every export computes calibrated
scores without knowing about it; AUC does not change, only what a score of 0.7 means.
"""

from __future__ import annotations

import numpy as np
import torch

from services.infer.model import TwoViewNet


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # log(1 + exp(-z)) for positives, log(1 + exp(z)) for negatives, computed stably.
    return float(np.mean(np.logaddexp(0.0, np.where(labels == 1, -z, z))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimising the calibration NLL (golden-section search on log T); 1.0 without
    both classes."""
    known = np.asarray(labels) >= 0
    z, y = np.asarray(logits, dtype=np.float64)[known], np.asarray(labels)[known].astype(int)
    if y.size == 0 or y.min() == y.max():
        return 1.0
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(z, y, np.exp(a)), _nll(z, y, np.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(z, y, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(z, y, np.exp(b))
    return float(np.exp((lo + hi) / 2.0))


def fold_temperature(model: TwoViewNet, temperature: float) -> None:
    """Divide the malignancy head by ``temperature`` in place (its logits become ``logit / T``)."""
    with torch.no_grad():
        model.malignancy_head.weight.div_(temperature)
        model.malignancy_head.bias.div_(temperature)


__all__ = ["fit_temperature", "fold_temperature"]
