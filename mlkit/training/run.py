"""One whole training run: data, splits, training, calibration, final checkpoint, plots, model card
and (optionally) a held-out evaluation.

Three disjoint sets of patients: ``train`` fits the weights, ``val`` picks the epoch (early
stopping), ``calibration`` fits what must not be fitted on either: the temperature of the
malignancy score, the triage thresholds and the out-of-distribution threshold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.infer.checkpoint import save_checkpoint
from mlkit.training.calibration import fit_temperature, fold_temperature
from mlkit.training.data import BreastSet, training_splits
from mlkit.training.inference import predict_set
from mlkit.training.ood import FeatureDensityFit, fit_feature_density
from mlkit.evaluation.evaluate import evaluate_model
from mlkit.evaluation.metrics import Metrics, Thresholds, calibrate_thresholds, compute_metrics
from mlkit.training.report import DISCLAIMER_EN, DISCLAIMER_ES, CardData, write_model_card, write_plots
from mlkit.training.sources import DataSource
from mlkit.training.trainer import EpochRecord, TrainConfig, checkpoint_metadata, train


@dataclass
class RunResult:
    """Files written by a run and its headline numbers."""

    weights: Path
    model_card: Path
    plots: list[Path]
    validation: Metrics
    holdout: Metrics | None
    thresholds: Thresholds
    best_epoch: int
    epochs_run: int
    calibration: Metrics | None = None
    temperature: float = 1.0
    ood: FeatureDensityFit | None = None


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run_training(
    config: TrainConfig,
    source: DataSource,
    out_dir: Path,
    *,
    val_fraction: float = 0.15,
    calibration_fraction: float = 0.15,
    split_seed: int = 0,
    checkpoint_dir: Path | None = None,
    weights_name: str = "model.pt",
    holdout: DataSource | None = None,
    reproduce: str = "",
    notes: list[str] | None = None,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    data: BreastSet | None = None,
) -> RunResult:
    """Train on ``source`` and write ``out_dir/{weights_name, MODEL_CARD.md, plots/, history.json, metrics.json}``.

    ``checkpoint_dir`` (default ``out_dir/checkpoints``) receives ``last.pt`` every epoch and
    ``best.pt``. The final checkpoint is the best epoch with the calibrated triage thresholds
    in its metadata. ``data`` skips loading when the breasts are already in memory.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else out_dir / "checkpoints"
    breasts = data if data is not None else source.load(progress=progress)
    train_idx, val_idx, cal_idx = training_splits(breasts, val_fraction, calibration_fraction, split_seed)
    train_set, val_set = breasts.subset(train_idx), breasts.subset(val_idx)
    # Without calibration patients (tiny data sets) the validation set stands in, and the card says so.
    cal_set = breasts.subset(cal_idx) if cal_idx.size else val_set
    trained_on = source.describe()

    result = train(config, train_set, val_set, checkpoint_dir, trained_on, progress=progress, on_epoch=on_epoch)
    device = config.resolved_device()
    batch = 2 * config.batch_size
    cal_outputs = predict_set(result.model, cal_set, batch_size=batch, device=device)
    temperature = fit_temperature(cal_outputs.logits, cal_set.malignancy) if cal_outputs.logits is not None else 1.0
    fold_temperature(result.model, temperature)
    cal_outputs = predict_set(result.model, cal_set, batch_size=batch, device=device)
    thresholds = calibrate_thresholds(cal_set.malignancy, cal_outputs.scores)
    ood = fit_feature_density(result.model, train_set, cal_set, batch_size=batch, device=device)
    limits = (thresholds.high, thresholds.low)
    val_outputs = predict_set(result.model, val_set, batch_size=batch, device=device, loss_config=config.loss)
    validation = compute_metrics(
        val_set.malignancy, val_set.birads, val_set.density,
        val_outputs.scores, val_outputs.birads_probs, val_outputs.density_probs,
        loss=val_outputs.loss, thresholds=limits, study_ids=val_set.study_ids,
    )
    calibration = compute_metrics(
        cal_set.malignancy, cal_set.birads, cal_set.density,
        cal_outputs.scores, cal_outputs.birads_probs, cal_outputs.density_probs,
        thresholds=limits, study_ids=cal_set.study_ids,
    )
    split_note = (
        f"val_fraction={val_fraction}, calibration_fraction={calibration_fraction}, split_seed={split_seed}, "
        "por paciente / by patient"
        + ("" if cal_idx.size else "; sin pacientes de calibración: se usó validación / no calibration patients: "
           "validation used")
    )
    meta = checkpoint_metadata(
        config,
        trained_on,
        triage_high=f"{thresholds.high:.4f}",
        triage_low=f"{thresholds.low:.4f}",
        triage_calibration=thresholds.model_dump(),
        malignancy_temperature=f"{temperature:.4f}",
        ood_threshold=f"{ood.threshold:.6g}",
        ood_calibration=(
            f"Mahalanobis (Ledoit-Wolf {ood.shrinkage:.3f}) sobre {ood.fitted_views} vistas de entrenamiento; umbral = "
            f"cuantil {ood.quantile} de {ood.calibration_breasts} mamas de calibración / over {ood.fitted_views} "
            f"training views; threshold = quantile {ood.quantile} of {ood.calibration_breasts} calibration breasts"
        ),
        best_epoch=result.best_epoch,
        validation=validation.headline(),
        split=split_note,
        disclaimer=f"{DISCLAIMER_ES} / {DISCLAIMER_EN}",
    )
    weights = out_dir / weights_name
    save_checkpoint(result.model, weights, meta)

    holdout_metrics: Metrics | None = None
    holdout_text = ""
    if holdout is not None:
        holdout_set = holdout.load(progress=progress)
        holdout_metrics = evaluate_model(result.model, holdout_set, meta, batch_size=batch, device=device).metrics
        holdout_text = f"Prueba aparte / held-out: {holdout.describe()}."

    plots = write_plots(out_dir / "plots", val_set.malignancy, val_outputs.scores, validation, thresholds,
                        result.history)
    _write_json(out_dir / "history.json", [r.model_dump(mode="json") for r in result.history])
    _write_json(out_dir / "metrics.json", {
        "validation": validation.model_dump(mode="json"),
        "calibration": calibration.model_dump(mode="json"),
        "holdout": holdout_metrics.model_dump(mode="json") if holdout_metrics else None,
        "thresholds": thresholds.model_dump(),
        "malignancy_temperature": temperature,
        "ood_threshold": ood.threshold,
        "best_epoch": result.best_epoch,
    })
    summary = {"entrenamiento / train": train_set.summary(), "validación / validation": val_set.summary()}
    if cal_idx.size:
        summary["calibración / calibration"] = cal_set.summary()
    card = CardData(
        model_name=meta["model_name"],
        version=meta["version"],
        backbone=config.backbone,
        parameters=sum(p.numel() for p in result.model.parameters()),
        checkpoint_file=weights.name,
        checkpoint_bytes=weights.stat().st_size,
        trained_on=trained_on,
        data_summary=summary,
        config=config,
        best_epoch=result.best_epoch,
        epochs_run=len(result.history),
        stopped_early=result.stopped_early,
        training_seconds=time.perf_counter() - started,
        validation=validation,
        calibration=calibration,
        temperature=temperature,
        ood_threshold=ood.threshold,
        ood_description=meta["ood_calibration"],
        thresholds=thresholds,
        holdout=holdout_metrics,
        holdout_description=holdout_text,
        reproduce=reproduce,
        notes=notes or [],
    )
    card_path = write_model_card(card, out_dir / "MODEL_CARD.md")
    return RunResult(
        weights=weights,
        model_card=card_path,
        plots=plots,
        validation=validation,
        holdout=holdout_metrics,
        thresholds=thresholds,
        best_epoch=result.best_epoch,
        epochs_run=len(result.history),
        calibration=calibration,
        temperature=temperature,
        ood=ood,
    )


__all__ = ["RunResult", "run_training"]
