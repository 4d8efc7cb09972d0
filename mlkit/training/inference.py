"""Batched forward passes of a TwoViewNet over a :class:`BreastSet`, returning NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from services.infer.model import TwoViewNet
from mlkit.training.data import BreastSet
from mlkit.training.images import to_float
from mlkit.training.losses import LossConfig, multitask_loss


@dataclass
class Outputs:
    """Per-breast model outputs: malignancy score (N), BI-RADS (N x 7) and density (N x 4) probabilities."""

    scores: np.ndarray
    birads_probs: np.ndarray
    density_probs: np.ndarray
    loss: float | None = None
    logits: np.ndarray | None = None
    """Malignancy logits (N), before the sigmoid."""
    ood_distances: np.ndarray | None = None


def batch_tensors(images: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CC and MLO tensors ``B x 3 x 336 x 224`` (0..1, exactly as the service feeds them) of ``B`` breasts."""
    floats = torch.from_numpy(to_float(images))  # B x 2 x H x W x 3
    cc = floats[:, 0].permute(0, 3, 1, 2).contiguous().to(device)
    mlo = floats[:, 1].permute(0, 3, 1, 2).contiguous().to(device)
    return cc, mlo


def label_tensors(data: BreastSet, index: slice | np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """The labels of the breasts at ``index`` as tensors (``-1`` unknown)."""
    return {
        "malignancy": torch.from_numpy(data.malignancy[index]).to(device),
        "birads": torch.from_numpy(data.birads[index]).to(device),
        "density": torch.from_numpy(data.density[index]).to(device),
    }


def predict_set(
    model: TwoViewNet,
    data: BreastSet,
    batch_size: int = 32,
    device: str = "cpu",
    loss_config: LossConfig | None = None,
) -> Outputs:
    """Run ``model`` (switched to eval mode) over every breast of ``data``.

    With ``loss_config`` the mean multi-task loss against the labels is computed too.
    """
    model.eval()
    dev = torch.device(device)
    scores, birads, density, logits, distances = [], [], [], [], []
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            window = slice(start, start + batch_size)
            cc, mlo = batch_tensors(data.images[window], dev)
            out = model(cc, mlo)
            if loss_config is not None:
                batch_loss = multitask_loss(out, label_tensors(data, window, dev), loss_config)["total"]
                total += float(batch_loss) * cc.shape[0]
            logits.append(out["malignancy_logit"].float().cpu().numpy())
            distances.append(out["ood_distance"].float().cpu().numpy())
            scores.append(torch.sigmoid(out["malignancy_logit"]).cpu().numpy())
            birads.append(torch.softmax(out["birads_logits"], dim=1).cpu().numpy())
            density.append(torch.softmax(out["density_logits"], dim=1).cpu().numpy())
    if not scores:
        return Outputs(np.zeros(0), np.zeros((0, 7)), np.zeros((0, 4)))
    loss = total / len(data) if loss_config is not None else None
    return Outputs(np.concatenate(scores), np.concatenate(birads), np.concatenate(density), loss,
                   np.concatenate(logits), np.concatenate(distances))


__all__ = ["Outputs", "batch_tensors", "label_tensors", "predict_set"]
