"""The serving signature of the two-view model: tensor names, shapes and the export wrapper's contract.

One place that every exported form (TorchScript, ONNX, Triton) and every backend agrees on.
"""

from __future__ import annotations

from typing import Final

from services.infer.model import BIRADS_CLASSES, DENSITY_CLASSES, INPUT_HEIGHT, INPUT_WIDTH

INPUT_NAMES: Final[tuple[str, str]] = ("cc", "mlo")
"""Model inputs, each float32 ``N x 3 x 336 x 224`` in 0..1."""

REQUIRED_OUTPUT_NAMES: Final[tuple[str, str, str]] = ("malignancy_logit", "birads_logits", "density_logits")
"""Outputs every served model has: ``N x 1``, ``N x 7``, ``N x 4`` float32 logits."""

OUTPUT_NAMES: Final[tuple[str, ...]] = (*REQUIRED_OUTPUT_NAMES, "ood_distance")
"""Outputs of an export, in this order; ``ood_distance`` (``N x 1``) is the distance to the training
features. A model exported before it existed lacks it, and its breasts can never be called in
distribution (so never GREEN or RED)."""

INPUT_DIMS: Final[tuple[int, int, int]] = (3, INPUT_HEIGHT, INPUT_WIDTH)
"""Per-item shape of each input (the batch axis is dynamic)."""

OUTPUT_DIMS: Final[dict[str, tuple[int, ...]]] = {
    "malignancy_logit": (1,),
    "birads_logits": (len(BIRADS_CLASSES),),
    "density_logits": (len(DENSITY_CLASSES),),
    "ood_distance": (1,),
}
"""Per-item shape of each output (the batch axis is dynamic)."""

ONNX_OPSET: Final[int] = 18
"""ONNX opset written by ``mdd export`` (at least 17)."""

TRITON_MODEL_NAME: Final[str] = "twoview"
"""Default model name in the Triton / KServe v2 model repository."""
