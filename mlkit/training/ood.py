"""The out-of-distribution check on the model's own features: fit on training views, calibrate apart.

The backbone's pooled features of every training view (CC and MLO alike) are summarised by their
mean and a Ledoit-Wolf shrunk covariance (Ledoit & Wolf, 2004); the distance of a new view is its
Mahalanobis distance to them, and a breast takes the larger distance of its two views. The threshold
is a high quantile of the distances of calibration breasts, which the density was not fitted on,
so that it says how far ordinary images of the training distribution fall, not how far the fitted
ones do. Both are stored in the checkpoint (``ood.mean``, ``ood.precision``, ``ood_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mlkit.training.data import BreastSet
from mlkit.training.inference import batch_tensors
from services.infer.model import TwoViewNet

#: Share of calibration breasts that must fall inside the threshold.
OOD_QUANTILE: float = 0.995


@dataclass(frozen=True)
class FeatureDensityFit:
    """What the check learned: the Gaussian of the training features and its calibrated threshold."""

    mean: np.ndarray
    precision: np.ndarray
    shrinkage: float
    threshold: float
    quantile: float
    fitted_views: int
    calibration_breasts: int


def view_features(model: TwoViewNet, data: BreastSet, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """Backbone features ``2N x C`` of every breast's CC then MLO view (``N`` breasts)."""
    model.eval()
    dev = torch.device(device)
    cc_rows, mlo_rows = [], []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            cc, mlo = batch_tensors(data.images[start : start + batch_size], dev)
            cc_rows.append(model.embed(cc).float().cpu().numpy())
            mlo_rows.append(model.embed(mlo).float().cpu().numpy())
    return np.concatenate([*cc_rows, *mlo_rows]).astype(np.float64)


def ledoit_wolf(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(mean, covariance, shrinkage)``: the sample covariance shrunk towards a scaled identity."""
    n, p = features.shape
    if n < 2:
        raise ValueError("se necesitan al menos dos vistas / at least two views are needed")
    mean = features.mean(axis=0)
    x = features - mean
    sample = x.T @ x / n
    mu = float(np.trace(sample)) / p
    squared = x * x
    beta_sum = float(np.sum(squared.T @ squared)) / n
    delta_sum = float(np.sum(sample * sample))
    beta = (beta_sum - delta_sum) / (n * p)
    delta = (delta_sum - 2.0 * mu * float(np.trace(sample)) + p * mu * mu) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if delta <= 0 else beta / delta
    covariance = (1.0 - shrinkage) * sample + shrinkage * mu * np.eye(p)
    return mean, covariance, float(shrinkage)


def breast_distances(model: TwoViewNet, data: BreastSet, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """The model's ``ood_distance`` of every breast (the larger of its two views')."""
    model.eval()
    dev = torch.device(device)
    out = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            cc, mlo = batch_tensors(data.images[start : start + batch_size], dev)
            out.append(model(cc, mlo)["ood_distance"].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def fit_feature_density(
    model: TwoViewNet,
    fit_set: BreastSet,
    calibration_set: BreastSet,
    *,
    quantile: float = OOD_QUANTILE,
    batch_size: int = 32,
    device: str = "cpu",
) -> FeatureDensityFit:
    """Fit the density on ``fit_set``'s views, install it in ``model``, and calibrate the threshold on
    ``calibration_set``'s breasts."""
    if len(calibration_set) == 0:
        raise ValueError("faltan mamas de calibración / no calibration breasts")
    features = view_features(model, fit_set, batch_size, device)
    mean, covariance, shrinkage = ledoit_wolf(features)
    precision = np.linalg.inv(covariance)
    precision = (precision + precision.T) / 2.0
    with torch.no_grad():
        model.ood.mean.copy_(torch.as_tensor(mean, dtype=model.ood.mean.dtype))
        model.ood.precision.copy_(torch.as_tensor(precision, dtype=model.ood.precision.dtype))
    distances = breast_distances(model, calibration_set, batch_size, device)
    threshold = float(np.quantile(distances, quantile))
    return FeatureDensityFit(
        mean=mean,
        precision=precision,
        shrinkage=shrinkage,
        threshold=threshold,
        quantile=quantile,
        fitted_views=int(features.shape[0]),
        calibration_breasts=len(calibration_set),
    )


__all__ = ["FeatureDensityFit", "OOD_QUANTILE", "breast_distances", "fit_feature_density", "ledoit_wolf", "view_features"]
