"""The training loop: seeded epochs, validation metrics, checkpoints and early stopping.

Each epoch trains on shuffled batches streamed from disk and augmented (:mod:`.augment`),
evaluates on the validation breasts, writes ``last.pt`` and, when validation AUC improves (ties
broken by validation loss), ``best.pt``. Training stops after ``patience`` epochs without
improvement or at ``epochs``. Malignant breasts weigh ``n_benign / n_malignant`` in the loss
(class imbalance); on a GPU (``device="auto"`` picks one when there is one) the forward and
backward passes run in mixed precision.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from services.infer.checkpoint import load_checkpoint, save_checkpoint
from services.infer.model import BACKBONE_MODEL_NAMES, BACKBONES, MODEL_VERSION, TwoViewNet
from mlkit.training.data import BreastImages, BreastSet
from mlkit.training.augment import Augmentation, augment_batch
from mlkit.training.inference import Outputs, batch_tensors, label_tensors, predict_set
from mlkit.training.losses import LossConfig, multitask_loss
from mlkit.evaluation.metrics import Metrics, compute_metrics


class TrainConfig(BaseModel):
    """Everything that decides a training run (written into the checkpoint and the model card)."""

    backbone: str = Field("efficientnet_b0", description="Red base / backbone")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(16, ge=2)
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(4, ge=1, description="Épocas sin mejora antes de parar / epochs without improvement")
    min_delta: float = Field(1e-4, ge=0, description="Mejora mínima del AUC / minimum AUC gain")
    seed: int = Field(0, description="Semilla de pesos y orden / seed of weights and batch order")
    device: str = Field("cpu", description="cpu, cuda o auto (cuda si hay) / cpu, cuda or auto")
    threads: int = Field(0, ge=0, description="Hilos de torch; 0 = los de torch / torch threads")
    loss: LossConfig = Field(default_factory=LossConfig)
    augment: bool = Field(True, description="Aumento de datos / augmentation")
    augmentation: Augmentation = Field(default_factory=Augmentation)
    balance_classes: bool = Field(True, description="Peso de malignos = benignos / malignos / class weighting")
    amp: bool = Field(True, description="Precisión mixta en GPU / mixed precision on a GPU")
    channel_order: Literal["RGB", "BGR"] = Field("RGB", description="BGR: el orden de OpenCV de la semilla / the seed's")
    lesion_weight: float = Field(
        1.0, ge=0, description="Peso del mapa de lesiones (datos sintéticos) / weight of the lesion-map loss"
    )

    def resolved_device(self) -> str:
        """``cuda`` when asked for ``auto`` and a GPU is there, else what was given."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


class EarlyStopping:
    """Track the best validation AUC; ties (within ``min_delta``) are broken by a lower loss."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best_auc = -math.inf
        self.best_loss = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, epoch: int, auc: float, loss: float) -> bool:
        """Record an epoch; return True when it is the new best."""
        auc = -math.inf if math.isnan(auc) else auc  # no AUC (one class only): the loss decides
        tie = auc == self.best_auc or abs(auc - self.best_auc) <= self.min_delta
        better = self.best_epoch == 0 or auc > self.best_auc + self.min_delta or (tie and loss < self.best_loss)
        if better:
            self.best_auc, self.best_loss, self.best_epoch, self.bad_epochs = auc, loss, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs in a row brought no improvement."""
        return self.bad_epochs >= self.patience


class EpochRecord(BaseModel):
    """One line of the training history."""

    epoch: int
    train_loss: float
    val_loss: float
    seconds: float
    learning_rate: float
    best: bool
    metrics: Metrics


@dataclass
class TrainResult:
    """What a run leaves: the best model (in memory), its epoch, and the history."""

    model: TwoViewNet
    best_epoch: int
    history: list[EpochRecord]
    val_outputs: Outputs
    stopped_early: bool
    checkpoint_dir: Path


def _metrics(data: BreastSet, outputs: Outputs) -> Metrics:
    return compute_metrics(
        data.malignancy,
        data.birads,
        data.density,
        outputs.scores,
        outputs.birads_probs,
        outputs.density_probs,
        loss=outputs.loss,
        study_ids=data.study_ids,
        intervals=False,
    )


class LesionSupervision:
    """Where the malignant findings are, as a second training signal (synthetic data sets only).

    A 1 x 1 convolution over the backbone's stride-8 features predicts the lesion map of each view;
    its loss teaches the features to find small findings that one label per breast rarely points
    to. The head exists only during training: the checkpoint and every export are the plain network.
    """

    #: Lesion pixels are a few hundredths of a map: they weigh this much more than background ones.
    POSITIVE_WEIGHT = 20.0

    def __init__(self, model: TwoViewNet, weight: float, device: torch.device) -> None:
        fine = model.features.fine  # type: ignore[union-attr]
        channels = [m for m in fine.modules() if isinstance(m, torch.nn.Conv2d)][-1].out_channels
        self.head = torch.nn.Conv2d(channels, 1, kernel_size=1).to(device)
        self.weight = weight
        self.device = device
        self._features: torch.Tensor | None = None
        fine.register_forward_hook(lambda _module, _inputs, output: setattr(self, "_features", output))

    @classmethod
    def for_run(cls, model: TwoViewNet, data: BreastSet, weight: float, device: torch.device) -> "LesionSupervision | None":
        """The supervision when the backbone has stride-8 features and the data carry lesion maps."""
        images = data.images
        if weight <= 0 or not hasattr(model.features, "fine") or not isinstance(images, BreastImages):
            return None
        return cls(model, weight, device) if images.lesion_maps([0]) is not None else None

    def maps(self, data: BreastSet, index: np.ndarray) -> np.ndarray | None:
        """The lesion maps of the breasts at ``index``."""
        return data.images.lesion_maps(index) if isinstance(data.images, BreastImages) else None

    def loss(self, maps: np.ndarray) -> torch.Tensor:
        """Weighted BCE of the predicted maps of the last forward pass (CC views, then MLO, as embedded)."""
        assert self._features is not None
        logits = self.head(self._features.float())
        target = torch.from_numpy(np.concatenate([maps[:, 0], maps[:, 1]])[:, None]).to(self.device)
        if target.shape[-2:] != logits.shape[-2:]:
            target = torch.nn.functional.interpolate(target, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        pos_weight = torch.tensor(self.POSITIVE_WEIGHT, device=self.device)
        return self.weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)


def class_weight(data: BreastSet) -> float | None:
    """``n_benign / n_malignant`` of the known malignancy labels, at most 10 (None without both)."""
    known = data.malignancy[data.malignancy >= 0]
    positives = int((known == 1).sum())
    if positives == 0 or positives == known.size:
        return None
    return float(min((known.size - positives) / positives, 10.0))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pérdida / loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        transient=True,
    )


def checkpoint_metadata(config: TrainConfig, trained_on: str, **extra: object) -> dict[str, str]:
    """The metadata every checkpoint of a run carries (values as strings)."""
    meta = {
        "model_name": BACKBONE_MODEL_NAMES.get(config.backbone, f"twoview-{config.backbone}"),
        "version": MODEL_VERSION,
        "trained_on": trained_on,
        "backbone": config.backbone,
        "train_config": config.model_dump_json(),
    }
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


def train(
    config: TrainConfig,
    train_set: BreastSet,
    val_set: BreastSet,
    checkpoint_dir: Path,
    trained_on: str,
    *,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train a TwoViewNet and return the best epoch's model (by validation AUC).

    ``checkpoint_dir`` receives ``last.pt`` after every epoch and ``best.pt`` at each
    improvement; ``on_epoch`` is called with each epoch's record (printing, logging).
    """
    if config.backbone not in BACKBONES:
        raise ValueError(f"Backbone desconocido / unknown backbone {config.backbone!r}: {BACKBONES}")
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError("faltan mamas para entrenar o validar / no breasts to train or validate on")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device_name = config.resolved_device()
    device = torch.device(device_name)
    amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_config = config.loss
    if config.balance_classes and loss_config.malignancy_pos_weight is None:
        loss_config = loss_config.model_copy(update={"malignancy_pos_weight": class_weight(train_set)})
    model = TwoViewNet(backbone=config.backbone, channel_order=config.channel_order).to(device)
    lesions = LesionSupervision.for_run(model, train_set, config.lesion_weight, device)
    parameters = list(model.parameters()) + (list(lesions.head.parameters()) if lesions else [])
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    order_rng = np.random.default_rng(config.seed)
    augment_rng = np.random.default_rng([config.seed, 0xA09])
    stopper = EarlyStopping(config.patience, config.min_delta)
    checkpoint_dir = Path(checkpoint_dir)
    history: list[EpochRecord] = []
    stopped_early = False

    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = order_rng.permutation(len(train_set))
        running, seen = 0.0, 0
        with _progress() if progress else Progress(disable=True) as bar:
            task = bar.add_task(f"Época / epoch {epoch}/{config.epochs}", total=steps_per_epoch, loss=0.0)
            for step in range(steps_per_epoch):
                index = np.sort(order[step * config.batch_size : (step + 1) * config.batch_size])
                if index.size < 2:  # BatchNorm needs two examples
                    continue
                images = train_set.images[index]
                maps = lesions.maps(train_set, index) if lesions else None
                if config.augment:
                    augmented = augment_batch(images, augment_rng, config.augmentation, maps)
                    images, maps = augmented if maps is not None else (augmented, None)  # type: ignore[misc]
                cc, mlo = batch_tensors(images, device)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    outputs = model(cc, mlo)
                losses = multitask_loss(
                    {k: v.float() for k, v in outputs.items()}, label_tensors(train_set, index, device), loss_config
                )
                if lesions and maps is not None:
                    losses["total"] = losses["total"] + lesions.loss(maps)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["total"]).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                running += float(losses["total"].detach()) * index.size
                seen += index.size
                bar.update(task, advance=1, loss=running / max(seen, 1))
        outputs = predict_set(model, val_set, batch_size=2 * config.batch_size, device=device_name, loss_config=loss_config)
        metrics = _metrics(val_set, outputs)
        is_best = stopper.update(epoch, metrics.malignancy_auc, outputs.loss or 0.0)
        record = EpochRecord(
            epoch=epoch,
            train_loss=running / max(seen, 1),
            val_loss=float(outputs.loss or 0.0),
            seconds=round(time.perf_counter() - started, 2),
            learning_rate=float(scheduler.get_last_lr()[0]),
            best=is_best,
            metrics=metrics,
        )
        history.append(record)
        meta = checkpoint_metadata(config, trained_on, epoch=epoch, val_auc=metrics.malignancy_auc)
        save_checkpoint(model, checkpoint_dir / "last.pt", meta)
        if is_best:
            save_checkpoint(model, checkpoint_dir / "best.pt", meta)
        if on_epoch is not None:
            on_epoch(record)
        if stopper.should_stop and epoch < config.epochs:
            stopped_early = True
            break

    state, _ = load_checkpoint(checkpoint_dir / "best.pt")
    model.load_state_dict(state)
    val_outputs = predict_set(model, val_set, batch_size=2 * config.batch_size, device=device_name, loss_config=loss_config)
    return TrainResult(
        model=model.eval(),
        best_epoch=stopper.best_epoch,
        history=history,
        val_outputs=val_outputs,
        stopped_early=stopped_early,
        checkpoint_dir=checkpoint_dir,
    )


__all__ = ["EarlyStopping", "EpochRecord", "TrainConfig", "TrainResult", "checkpoint_metadata", "class_weight", "train"]
