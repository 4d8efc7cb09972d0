"""Losses of the three heads: malignancy (binary), BI-RADS and density (multi-class).

Focal loss (Lin et al., 2017) down-weights the easy examples, which helps when one class is
rare (malignant breasts, BI-RADS 5). With ``gamma = 0`` it equals the cross-entropy.
Unknown labels are ``-1`` and are left out of their head's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import Tensor


def binary_focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0, alpha: float | None = None) -> Tensor:
    """Mean binary focal loss of ``logits`` (N) against 0/1 ``targets`` (N).

    ``alpha`` weighs the positive class (``1 - alpha`` the negative); ``None`` weighs both alike.
    """
    targets = targets.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_true = p * targets + (1 - p) * (1 - targets)
    loss = (1 - p_true).pow(gamma) * bce
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean()


def focal_cross_entropy(logits: Tensor, targets: Tensor, gamma: float = 2.0) -> Tensor:
    """Mean multi-class focal loss of ``logits`` (N x K) against class indices ``targets`` (N)."""
    log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (-(1 - log_p.exp()).pow(gamma) * log_p).mean()


class LossConfig(BaseModel):
    """How the three heads are weighted and whether the focal form is used."""

    focal: bool = Field(False, description="Pérdida focal en malignidad y BI-RADS / focal loss")
    gamma: float = Field(2.0, ge=0, description="Exponente focal / focusing parameter")
    malignancy_weight: float = Field(1.0, ge=0)
    birads_weight: float = Field(0.5, ge=0)
    density_weight: float = Field(0.5, ge=0)
    malignancy_pos_weight: float | None = Field(
        None, gt=0, description="Peso de los casos malignos (desbalance) / weight of malignant breasts (imbalance)"
    )


def multitask_loss(outputs: dict[str, Tensor], targets: dict[str, Tensor], config: LossConfig) -> dict[str, Tensor]:
    """Per-head losses and their weighted sum (``total``) for one batch.

    ``targets`` holds ``malignancy`` (0/1), ``birads`` (0-6) and ``density`` (0-3), ``-1`` when
    unknown. A head with no known label in the batch contributes zero.
    """
    zero = outputs["malignancy_logit"].sum() * 0.0
    losses: dict[str, Tensor] = {}

    known = targets["malignancy"] >= 0
    if known.any():
        logits, labels = outputs["malignancy_logit"][known], targets["malignancy"][known]
        weight = config.malignancy_pos_weight
        if config.focal:
            alpha = weight / (1.0 + weight) if weight is not None else None
            losses["malignancy"] = binary_focal_loss(logits, labels, config.gamma, alpha)
        else:
            pos_weight = torch.tensor(weight, dtype=logits.dtype, device=logits.device) if weight is not None else None
            losses["malignancy"] = F.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), pos_weight=pos_weight
            )
    else:
        losses["malignancy"] = zero

    known = targets["birads"] >= 0
    if known.any():
        logits, labels = outputs["birads_logits"][known], targets["birads"][known]
        losses["birads"] = (
            focal_cross_entropy(logits, labels, config.gamma) if config.focal else F.cross_entropy(logits, labels)
        )
    else:
        losses["birads"] = zero

    known = targets["density"] >= 0
    losses["density"] = (
        F.cross_entropy(outputs["density_logits"][known], targets["density"][known]) if known.any() else zero
    )
    losses["total"] = (
        config.malignancy_weight * losses["malignancy"]
        + config.birads_weight * losses["birads"]
        + config.density_weight * losses["density"]
    )
    return losses


__all__ = ["LossConfig", "binary_focal_loss", "focal_cross_entropy", "multitask_loss"]
