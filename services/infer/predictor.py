"""Breast-level predictions from a TwoViewNet, batched per call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import numpy as np
import torch

from services.infer.checkpoint import load_checkpoint, model_from_checkpoint, ood_threshold, save_checkpoint
from services.infer.model import (
    BACKBONE_MODEL_NAMES,
    BIRADS_CLASSES,
    DENSITY_CLASSES,
    INPUT_HEIGHT,
    INPUT_WIDTH,
    MODEL_VERSION,
    TwoViewNet,
)

__all__ = [
    "BreastInputs",
    "BreastPrediction",
    "Laterality",
    "SHIPPED_WEIGHTS",
    "TorchPredictor",
    "UNTRAINED_WEIGHTS",
    "resolve_weights_path",
    "save_checkpoint",
]

Laterality = Literal["R", "L"]

UNTRAINED_LABEL: Final[str] = "sin entrenar / untrained"
#: The checkpoint in the repository, trained on synthetic phantoms (see weights/MODEL_CARD.md).
SHIPPED_WEIGHTS: Final[Path] = Path(__file__).resolve().parent / "weights" / "twoview-synthetic.pt"
#: Values of ``MDD_MODEL_WEIGHTS`` that ask for random weights instead of the shipped checkpoint.
UNTRAINED_WEIGHTS: Final[frozenset[str]] = frozenset({"untrained", "none", "sin-entrenar", "random"})


def resolve_weights_path(configured: Path | str | None) -> Path | None:
    """The checkpoint to load for a ``MDD_MODEL_WEIGHTS`` value.

    Not set: the shipped synthetic-data checkpoint (when present). ``untrained`` (or ``none``,
    ``sin-entrenar``, ``random``): None, i.e. seeded random weights. Anything else: that path.
    """
    if configured is None or str(configured).strip() == "":
        return SHIPPED_WEIGHTS if SHIPPED_WEIGHTS.is_file() else None
    if str(configured).strip().lower() in UNTRAINED_WEIGHTS:
        return None
    return Path(configured)
INPUT_SHAPE: Final[tuple[int, int, int]] = (INPUT_HEIGHT, INPUT_WIDTH, 3)
# Preprocessing may round slightly past 0..1; anything further is a caller bug.
_RANGE_TOLERANCE: Final[float] = 1e-3


def _check_view(name: str, image: np.ndarray | None) -> np.ndarray | None:
    if image is None:
        return None
    arr = np.asarray(image, dtype=np.float32)
    if arr.shape != INPUT_SHAPE:
        raise ValueError(f"Vista {name}: forma {arr.shape}, se esperaba / expected {INPUT_SHAPE}")
    if not np.isfinite(arr).all():
        raise ValueError(f"Vista {name}: valores no finitos / non-finite values")
    if arr.min() < -_RANGE_TOLERANCE or arr.max() > 1 + _RANGE_TOLERANCE:
        raise ValueError(f"Vista {name}: valores fuera de 0..1 / values outside 0..1")
    return arr


@dataclass(frozen=True)
class BreastInputs:
    """The preprocessed views of one breast: RGB float32 arrays (336, 224, 3) in 0..1."""

    laterality: Laterality
    cc: np.ndarray | None = None
    mlo: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.laterality not in ("R", "L"):
            raise ValueError(f"Lateralidad inválida / invalid laterality: {self.laterality!r}")
        object.__setattr__(self, "cc", _check_view("CC", self.cc))
        object.__setattr__(self, "mlo", _check_view("MLO", self.mlo))


@dataclass
class BreastPrediction:
    """Model output for one breast.

    ``views_used`` lists the views actually present; when it holds one view,
    that view also stood in for the missing one.
    """

    laterality: Laterality
    malignancy_score: float
    birads: int
    birads_probs: list[float]
    density: str
    density_probs: list[float]
    views_used: list[str] = field(default_factory=list)
    ood_score: float | None = None
    """Distance to the training features divided by the calibrated threshold; None: no such check."""

    @property
    def in_distribution(self) -> bool:
        """True only when the model checked the breast against its training features and it is close."""
        return self.ood_score is not None and self.ood_score <= 1.0


Logits = dict[str, np.ndarray]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predictions_from_logits(
    breasts: list[BreastInputs], logits: Logits, ood_threshold: float | None = None
) -> list[BreastPrediction]:
    """Scores, BI-RADS and density of each breast from the model's logit arrays.

    With ``ood_threshold`` (the checkpoint's calibrated distance) and an ``ood_distance`` output,
    each breast also gets its out-of-distribution score; otherwise that score stays None.
    """
    scores = 1.0 / (1.0 + np.exp(-np.asarray(logits["malignancy_logit"], dtype=np.float64).reshape(-1)))
    birads_probs = _softmax(np.asarray(logits["birads_logits"]))
    density_probs = _softmax(np.asarray(logits["density_logits"]))
    if not len(scores) == len(birads_probs) == len(density_probs) == len(breasts):
        raise ValueError(
            f"El modelo devolvió {len(scores)} resultados para {len(breasts)} mamas / "
            f"model returned {len(scores)} results for {len(breasts)} breasts"
        )
    distances = logits.get("ood_distance")
    ood = None
    if ood_threshold is not None and ood_threshold > 0 and distances is not None:
        ood = np.asarray(distances, dtype=np.float64).reshape(-1) / ood_threshold
        if len(ood) != len(breasts):
            raise ValueError("ood_distance no corresponde a las mamas / does not match the breasts")
    results: list[BreastPrediction] = []
    for i, breast in enumerate(breasts):
        views = [name for name, img in (("CC", breast.cc), ("MLO", breast.mlo)) if img is not None]
        results.append(
            BreastPrediction(
                laterality=breast.laterality,
                malignancy_score=float(scores[i]),
                birads=BIRADS_CLASSES[int(np.argmax(birads_probs[i]))],
                birads_probs=[float(p) for p in birads_probs[i]],
                density=DENSITY_CLASSES[int(np.argmax(density_probs[i]))],
                density_probs=[float(p) for p in density_probs[i]],
                views_used=views,
                ood_score=float(ood[i]) if ood is not None and np.isfinite(ood[i]) else None,
            )
        )
    return results


class TorchPredictor:
    """Runs TwoViewNet on CPU or GPU; untrained (seeded random weights) without a checkpoint.

    ``weights_path=None`` means random weights; :meth:`from_setting` applies the rule of
    ``MDD_MODEL_WEIGHTS`` (unset: the shipped checkpoint). A checkpoint may carry triage
    thresholds calibrated on its validation data (``calibrated_thresholds``).
    """

    def __init__(
        self,
        weights_path: Path | None = None,
        device: str = "cpu",
        backbone: str = "efficientnet_b0",
        seed: int = 0,
    ) -> None:
        self._device = torch.device(device)
        if weights_path is not None:
            state_dict, meta = load_checkpoint(weights_path)
            model = model_from_checkpoint(state_dict, meta)
            self._model_name = meta["model_name"]
            self._model_version = meta["version"]
            self.trained = True
            self.trained_on = meta["trained_on"]
            self.weights_path: Path | None = Path(weights_path)
            self.calibrated_thresholds: tuple[float, float] | None = (
                (float(meta["triage_high"]), float(meta["triage_low"]))
                if "triage_high" in meta and "triage_low" in meta
                else None
            )
            self.ood_threshold: float | None = ood_threshold(meta)
        else:
            # Own RNG scope: same seed -> same weights, whatever ran before.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = TwoViewNet(backbone=backbone)
            self._model_name = BACKBONE_MODEL_NAMES[backbone]
            self._model_version = MODEL_VERSION
            self.trained = False
            self.trained_on = UNTRAINED_LABEL
            self.weights_path = None
            self.calibrated_thresholds = None
            self.ood_threshold = None
        self._model = model.to(self._device).eval()

    @classmethod
    def from_setting(
        cls, configured: Path | str | None, device: str = "cpu", backbone: str = "efficientnet_b0"
    ) -> "TorchPredictor":
        """A predictor for a ``MDD_MODEL_WEIGHTS`` value (see :func:`resolve_weights_path`)."""
        return cls(resolve_weights_path(configured), device=device, backbone=backbone)

    @property
    def model(self) -> TwoViewNet:
        """The underlying network (in eval mode)."""
        return self._model

    @property
    def model_name(self) -> str:
        """Model name, from the checkpoint metadata when loaded."""
        return self._model_name

    @property
    def model_version(self) -> str:
        """Model version, from the checkpoint metadata when loaded."""
        return self._model_version

    def _stack(self, images: list[np.ndarray]) -> torch.Tensor:
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        return batch.to(self._device)

    def predict(self, breasts: list[BreastInputs]) -> list[BreastPrediction]:
        """Predict every breast that has at least one view, in one forward pass.

        A missing view is replaced by the other view of the same breast; a
        breast with no views is skipped. Output order follows input order.
        """
        usable = [b for b in breasts if b.cc is not None or b.mlo is not None]
        if not usable:
            return []
        ccs = [b.cc if b.cc is not None else b.mlo for b in usable]
        mlos = [b.mlo if b.mlo is not None else b.cc for b in usable]
        with torch.inference_mode():
            out = self._model(self._stack(ccs), self._stack(mlos))
            logits = {name: tensor.cpu().numpy() for name, tensor in out.items()}
        return predictions_from_logits(usable, logits, self.ood_threshold)
