"""Training: labelled data, losses, metrics, early stopping, a tiny end-to-end run and `mdd evaluate`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from services.infer.checkpoint import load_checkpoint
from mlkit.datasets.manifest import ManifestRow, read_manifest, write_manifest
from services.infer.predictor import BreastInputs, TorchPredictor
from mlkit.training.data import load_breasts, split_indices
from mlkit.training.images import to_bytes, to_float
from mlkit.training.losses import LossConfig, binary_focal_loss, focal_cross_entropy, multitask_loss
from mlkit.evaluation.metrics import (
    calibrate_thresholds,
    confusion_matrix,
    roc_auc,
    sensitivity_at_specificity,
    threshold_for_sensitivity,
)
from mlkit.training.run import run_training
from mlkit.training.sources import DataSource
from mlkit.training.trainer import EarlyStopping, TrainConfig
from shared.synth import make_view


# --- metrics ---------------------------------------------------------------------------------


def test_auc_of_perfect_reversed_and_tied_scores() -> None:
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(0.0)
    assert roc_auc(y, np.full(4, 0.5)) == pytest.approx(0.5)
    # One positive below one negative out of four pairs.
    assert roc_auc(y, np.array([0.1, 0.6, 0.5, 0.9])) == pytest.approx(0.75)


def test_sensitivity_at_specificity_and_calibrated_threshold_keep_their_promise() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200, int), np.ones(60, int)]
    s = np.r_[rng.normal(0.3, 0.15, 200), rng.normal(0.7, 0.15, 60)]
    sens = sensitivity_at_specificity(y, s, 0.9)
    cut = np.sort(s[y == 0])[int(np.ceil(0.9 * 200)) - 1]
    assert sens == pytest.approx(float((s[y == 1] > cut).mean()), abs=1 / 60)
    for target in (0.95, 0.99):
        t = threshold_for_sensitivity(y, s, target)
        assert (s[y == 1] >= t).mean() >= target
    thresholds = calibrate_thresholds(y, s)
    assert 0 <= thresholds.low <= thresholds.high <= 1
    assert (s[y == 1] >= thresholds.high).mean() >= 0.95
    assert calibrate_thresholds(np.zeros(5, int), s[:5]).calibrated is False


def test_confusion_matrix_counts_true_by_predicted() -> None:
    assert confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3) == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


# --- losses ----------------------------------------------------------------------------------


def test_focal_losses_reduce_to_cross_entropy_and_downweight_easy_cases() -> None:
    logits = torch.tensor([2.0, -1.0, 0.3, 4.0])
    targets = torch.tensor([1, 0, 0, 1])
    bce = F.binary_cross_entropy_with_logits(logits, targets.float())
    assert binary_focal_loss(logits, targets, gamma=0.0) == pytest.approx(float(bce), rel=1e-6)
    assert binary_focal_loss(logits, targets, gamma=2.0) < bce
    multi = torch.tensor([[3.0, 0.0, -1.0], [0.1, 0.2, 0.3]])
    classes = torch.tensor([0, 2])
    ce = F.cross_entropy(multi, classes)
    assert focal_cross_entropy(multi, classes, gamma=0.0) == pytest.approx(float(ce), rel=1e-6)
    assert focal_cross_entropy(multi, classes, gamma=2.0) < ce


def test_unknown_labels_are_left_out_of_the_loss() -> None:
    outputs = {
        "malignancy_logit": torch.tensor([5.0, -5.0]),
        "birads_logits": torch.zeros(2, 7),
        "density_logits": torch.zeros(2, 4),
    }
    targets = {"malignancy": torch.tensor([1, -1]), "birads": torch.tensor([-1, -1]), "density": torch.tensor([-1, 2])}
    losses = multitask_loss(outputs, targets, LossConfig())
    assert float(losses["malignancy"]) < 0.01  # the unknown second breast (a confident 0) is ignored
    assert float(losses["birads"]) == 0.0
    assert float(losses["density"]) == pytest.approx(math.log(4), rel=1e-5)


# --- data ------------------------------------------------------------------------------------


def test_byte_cache_gives_the_service_input_exactly() -> None:
    from shared.imaging.pipeline import preprocess_view

    model_input = preprocess_view(make_view(laterality="R", view="MLO", seed=3, finding="mass").dataset).model_input
    cached = to_bytes(model_input)
    assert cached.dtype == np.uint8
    np.testing.assert_array_equal(to_float(cached), model_input)


def _rows(tmp_path: Path, patients: int, split: str | None = None, prefix: str = "") -> list[ManifestRow]:
    rows = []
    image = np.zeros((336, 224, 3), np.uint8)
    for p in range(patients):
        for side in ("R", "L"):
            for view in ("CC", "MLO"):
                path = tmp_path / f"p{p}" / f"{side}_{view}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, image)
                rows.append(ManifestRow(study_id=f"S{prefix}{p}", patient_id=f"P{prefix}{p}", laterality=side, view=view,
                                        image_path=str(path), malignancy=int(side == "L" and p % 2 == 0),
                                        density="B", source="dicom_csv", split=split))
    return rows


def test_split_keeps_each_patient_on_one_side_and_follows_a_written_split(tmp_path: Path) -> None:
    data = load_breasts(_rows(tmp_path, 10), progress=False)
    train, val = split_indices(data, 0.3, seed=1)
    assert len(train) + len(val) == 20 and len(val) == 6
    assert not {data.patient_ids[i] for i in train} & {data.patient_ids[i] for i in val}
    again, _ = split_indices(data, 0.3, seed=1)
    np.testing.assert_array_equal(train, again)

    written = _rows(tmp_path / "w", 2, split="train", prefix="w") + _rows(tmp_path / "v", 1, split="val", prefix="v")
    manifest = write_manifest(written, tmp_path / "m.csv")
    data = load_breasts(read_manifest(manifest), progress=False)
    train, val = split_indices(data, 0.3, seed=1)
    assert [data.splits[i] for i in val] == ["val", "val"] and len(train) == 4


# --- early stopping and a tiny run -----------------------------------------------------------


def test_early_stopping_waits_patience_epochs_after_the_best_auc() -> None:
    stop = EarlyStopping(patience=2, min_delta=0.001)
    assert stop.update(1, 0.70, 0.9) is True
    assert stop.update(2, 0.80, 0.8) is True
    assert stop.update(3, 0.80, 0.7) is True  # same AUC, lower loss
    assert stop.update(4, 0.79, 0.6) is False and not stop.should_stop
    assert stop.update(5, 0.80, 0.9) is False and stop.should_stop
    assert stop.best_epoch == 3
    assert EarlyStopping(1).update(1, float("nan"), 1.0) is True  # a first epoch always counts


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("train")
    source = DataSource(synthetic=10, seed=3, generator=1, cache_dir=base / "cache")
    config = TrainConfig(backbone="small_cnn", epochs=4, batch_size=4, patience=1, learning_rate=3e-3,
                         loss=LossConfig(focal=True), device="auto")
    history = []
    result = run_training(config, source, base / "run", val_fraction=0.4, split_seed=0, progress=False,
                          holdout=DataSource(synthetic=3, seed=11, generator=1, cache_dir=base / "cache"),
                          on_epoch=history.append)
    return base, result, history


def test_tiny_run_writes_checkpoints_plots_and_model_card(tiny_run) -> None:  # type: ignore[no-untyped-def]
    base, result, history = tiny_run
    run = base / "run"
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    for name in ("roc.png", "confusion.png", "loss.png"):
        assert (run / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = result.model_card.read_text(encoding="utf-8")
    assert "sintéticos" in card and "not a clinical device" in card and "no es un dispositivo clínico" in card
    assert f"{result.thresholds.high:.4f}" in card and "Reproducir" not in card  # no command given
    assert result.holdout is not None and result.holdout.breasts == 6

    state, meta = load_checkpoint(result.weights)
    assert meta["backbone"] == "small_cnn" and "sintéticos" in meta["trained_on"]
    assert float(meta["triage_low"]) <= float(meta["triage_high"])
    predictor = TorchPredictor(result.weights)
    assert predictor.trained and predictor.calibrated_thresholds == (float(meta["triage_high"]), float(meta["triage_low"]))
    image = np.full((336, 224, 3), 0.5, np.float32)
    assert 0.0 <= predictor.predict([BreastInputs("L", cc=image, mlo=image)])[0].malignancy_score <= 1.0

    saved = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in saved] == [r.epoch for r in history]
    first = saved[0]["metrics"]
    assert set(first) >= {"malignancy_auc", "malignancy_accuracy", "sensitivity_at_90_specificity", "density_accuracy"}
    assert np.asarray(first["density_confusion"]).shape == (4, 4)
    assert np.asarray(first["malignancy_confusion"]).sum() == result.validation.breasts


def test_tiny_run_stops_after_patience_epochs_without_improvement(tiny_run) -> None:  # type: ignore[no-untyped-def]
    _, result, history = tiny_run
    best = [r.epoch for r in history if r.best][-1]
    assert best == result.best_epoch
    assert len(history) == min(best + 1, 4)  # patience 1: one epoch past the last improvement
    _, meta = load_checkpoint(result.weights)
    assert meta["best_epoch"] == str(best)


def test_evaluate_command_prints_the_training_metrics(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from services.cli import app

    base, result, _ = tiny_run
    out = tmp_path / "metrics.json"
    run = CliRunner().invoke(app, ["evaluate", "--weights", str(result.weights), "--synthetic", "3", "--seed", "11",
                                   "--generator", "1", "--cache-dir", str(base / "cache"), "--json", str(out),
                                   "--no-progress"],
                             env={"COLUMNS": "200"})
    assert run.exit_code == 0, run.output
    assert "AUC" in run.output and "sintéticos" in run.output and "Densidad ACR" in run.output
    metrics = json.loads(out.read_text())
    assert result.holdout is not None
    assert metrics["malignancy_auc"] == pytest.approx(result.holdout.malignancy_auc, nan_ok=True)
    assert metrics["density_accuracy"] == pytest.approx(result.holdout.density_accuracy)


def test_train_command_refuses_two_data_sources(tmp_path: Path) -> None:
    from services.cli import app

    run = CliRunner().invoke(app, ["train", "--synthetic", "2", "--manifest", str(tmp_path / "m.csv"),
                                   "--out", str(tmp_path / "o")])
    assert run.exit_code == 2 and "--manifest" in run.output


# --- splits, streaming, augmentation, calibration, intervals, distribution check ----------------


def test_a_manifest_with_only_train_and_test_gets_validation_and_calibration_carved_from_train(tmp_path: Path) -> None:
    from mlkit.training.data import training_splits

    rows = _rows(tmp_path / "a", 12, split="train", prefix="a") + _rows(tmp_path / "t", 3, split="test", prefix="t")
    data = load_breasts(read_manifest(write_manifest(rows, tmp_path / "m.csv")), progress=False)
    train, val, calibration = training_splits(data, 0.2, 0.2, seed=4)
    patients = [{data.patient_ids[i] for i in part} for part in (train, val, calibration)]
    assert all(patients) and not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert {data.splits[i] for i in np.concatenate([train, val, calibration])} == {"train"}  # test rows stay out
    assert len(train) + len(val) + len(calibration) == 24


def test_breast_images_stream_from_disk_and_index_like_an_array(tmp_path: Path) -> None:
    from mlkit.training.data import BreastImages

    rows = _rows(tmp_path, 3)
    for i, row in enumerate(rows):
        np.save(row.image_path, np.full((336, 224, 3), i, np.uint8))
    data = load_breasts(rows, progress=False)
    assert isinstance(data.images, BreastImages) and data.images.shape == (6, 2, 336, 224, 3)
    batch = data.images[np.array([2, 0])]
    assert batch.shape == (2, 2, 336, 224, 3)
    assert (batch[0, 0] == 4).all() and (batch[0, 1] == 5).all() and (batch[1, 1] == 1).all()
    part = data.subset([5, 1])
    assert isinstance(part.images, BreastImages) and (part.images[0:1][0, 0] == 10).all()
    in_memory = load_breasts(rows, progress=False, in_memory=True)
    np.testing.assert_array_equal(in_memory.images[np.arange(6)], data.images[np.arange(6)])


def test_augmentation_changes_grey_levels_and_geometry_but_keeps_magma_colours() -> None:
    from mlkit.training.augment import Augmentation, augment_view, grey_of
    from shared.imaging.pipeline import magma

    grey = np.zeros((336, 224), np.uint8)
    grey[40:300, :150] = np.linspace(40, 220, 150, dtype=np.uint8)[None, :]
    rgb = magma(grey)
    np.testing.assert_array_equal(grey_of(rgb), grey)
    out = augment_view(rgb, np.random.default_rng(3), Augmentation(), "CC")
    assert out.shape == rgb.shape and out.dtype == np.uint8 and not np.array_equal(out, rgb)
    np.testing.assert_array_equal(magma(grey_of(out)), out)  # only colours the service can produce
    assert (grey_of(out)[:, -40:] == 0).all()  # the background stays black, the chest wall on the left
    same = augment_view(rgb, np.random.default_rng(3), Augmentation(), "CC")
    np.testing.assert_array_equal(out, same)


def test_temperature_scaling_recovers_the_temperature_and_keeps_the_ranking() -> None:
    from mlkit.training.calibration import fit_temperature, fold_temperature

    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    assert fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.1)  # overconfident by 3
    net = TorchPredictor(backbone="small_cnn").model
    x = torch.rand(3, 3, 336, 224)
    with torch.no_grad():
        before = net(x, x)["malignancy_logit"]
        fold_temperature(net, 2.5)
        after = net(x, x)["malignancy_logit"]
    torch.testing.assert_close(after, before / 2.5, rtol=1e-5, atol=1e-6)


def test_bootstrap_intervals_cover_the_estimate_and_exams_take_the_worst_breast() -> None:
    from mlkit.evaluation.metrics import bootstrap_auc, compute_metrics, exam_level

    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(150, int), np.ones(50, int)]
    s = np.r_[rng.normal(0.3, 0.2, 150), rng.normal(0.6, 0.2, 50)]
    lo, hi = bootstrap_auc(y, s)  # type: ignore[misc]
    assert lo < roc_auc(y, s) < hi and hi - lo < 0.2
    exam_y, exam_s, studies = exam_level(np.array([0, 1, 0, 0]), np.array([0.2, 0.9, 0.1, 0.3]), ["a", "a", "b", "b"])
    assert studies == ["a", "b"] and list(exam_y) == [1, 0] and list(exam_s) == [0.9, 0.3]
    m = compute_metrics(y, np.full(200, 1), np.full(200, 1), s, np.eye(7)[np.ones(200, int)], np.eye(4)[np.ones(200, int)],
                        thresholds=[0.45], study_ids=[str(i // 2) for i in range(200)])
    assert m.exams == 100 and m.malignancy_auc_ci is not None and m.exam_auc_ci is not None
    point = m.triage["0.4500"]
    assert point.sensitivity_ci is not None and point.sensitivity_ci[0] <= point.sensitivity <= point.sensitivity_ci[1]


def test_ledoit_wolf_shrinks_towards_the_identity_when_there_are_few_samples() -> None:
    from mlkit.training.ood import ledoit_wolf

    rng = np.random.default_rng(2)
    mixing = rng.normal(size=(40, 40)) * np.linspace(0.1, 3.0, 40)  # correlated, unequal variances
    few = rng.normal(size=(10, 40)) @ mixing
    many = rng.normal(size=(5000, 40)) @ mixing
    _, cov_few, shrink_few = ledoit_wolf(few)
    _, cov_many, shrink_many = ledoit_wolf(many)
    assert shrink_few > shrink_many and 0 <= shrink_many < 0.1
    assert np.all(np.linalg.eigvalsh(cov_few) > 0)  # invertible although 10 samples < 40 dimensions
    np.testing.assert_allclose(cov_many, mixing.T @ mixing, atol=0.1 * float(np.abs(mixing.T @ mixing).max()))


def test_tiny_run_calibrates_temperature_thresholds_and_the_distribution_check(tiny_run) -> None:  # type: ignore[no-untyped-def]
    _, result, _ = tiny_run
    _, meta = load_checkpoint(result.weights)
    assert float(meta["malignancy_temperature"]) == pytest.approx(result.temperature, abs=1e-3)
    assert float(meta["ood_threshold"]) > 0 and result.ood is not None
    predictor = TorchPredictor(result.weights)
    assert predictor.ood_threshold == pytest.approx(result.ood.threshold, rel=1e-4)
    card = result.model_card.read_text(encoding="utf-8")
    assert "Temperatura" in card and "ood_threshold" in card and "ImageNet" in card and "robustness:start" in card


def test_second_generator_rows_are_labelled_per_breast(tmp_path: Path) -> None:
    from mlkit.training.synthetic import study_rows_v2
    from shared import synth_v2

    seed = 12345
    rows = study_rows_v2(seed, tmp_path)
    case = synth_v2.sample_case(seed)
    assert len(rows) == 4 and all((tmp_path / r.image_path).is_file() for r in rows)
    for row in rows:
        breast = case.breast(row.laterality)
        assert (row.malignancy, row.birads) == (int(breast.malignant), breast.birads)
        assert np.load(tmp_path / row.image_path).shape == (336, 224, 3)


def test_robustness_table_has_every_row_and_goes_into_the_card(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from mlkit.evaluation.robustness import ROWS, evaluate_robustness, write_into_card

    _, result, _ = tiny_run
    report = evaluate_robustness(result.weights, studies=3, seed=5, spacing_mm=0.5)
    assert [row.name for row in report.rows] == list(ROWS)
    clean = report.rows[0]
    assert clean.drop == 0 and clean.breasts == 6
    for row in report.rows:
        assert row.meets_targets == (row.auc >= 0.90 and row.drop <= 0.05)  # the targets, as printed
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(result.model_card.read_text(encoding="utf-8"), encoding="utf-8")
    text = write_into_card(report, card).read_text(encoding="utf-8")
    assert "magnificación 2x" in text and "Sin medir todavía" not in text and text.count("robustness:start") == 1


def test_lesion_maps_follow_their_views_and_supervise_the_stride_8_features(tmp_path: Path) -> None:
    from mlkit.training.augment import Augmentation, augment_view
    from mlkit.training.synthetic import lesion_map_path
    from mlkit.training.trainer import LesionSupervision, train
    from shared.imaging.pipeline import magma

    grey = np.zeros((336, 224), np.uint8)
    grey[20:320, :200] = 120
    grey[150:180, 100:130] = 250  # a lesion
    lesions = np.zeros((42, 28), np.float32)
    lesions[150 // 8 : 180 // 8, 100 // 8 : 130 // 8] = 1.0
    out, moved = augment_view(magma(grey), np.random.default_rng(4), Augmentation(gamma=0, contrast=0, brightness=0,
                                                                                 noise=0), "CC", lesions)
    from mlkit.training.augment import grey_of

    bright = grey_of(out) > 200
    rows, cols = np.nonzero(bright)
    mr, mc = np.unravel_index(np.argmax(moved), moved.shape)
    assert abs(rows.mean() / 8 - (mr + 0.5)) < 2.0 and abs(cols.mean() / 8 - (mc + 0.5)) < 2.0  # moved together

    rows_ = _rows(tmp_path, 4)
    for row in rows_:
        np.save(row.image_path, magma(grey))
        np.save(lesion_map_path(Path(row.image_path)), lesions.astype(np.float16))
    data = load_breasts(rows_, progress=False)
    assert data.images.lesion_maps([0, 1]).shape == (2, 2, 42, 28)  # type: ignore[union-attr]
    config = TrainConfig(backbone="compact_cnn", epochs=1, batch_size=4, patience=1, device="cpu")
    model = TorchPredictor(backbone="compact_cnn").model
    assert LesionSupervision.for_run(model, data, 1.0, torch.device("cpu")) is not None
    assert LesionSupervision.for_run(TorchPredictor(backbone="small_cnn").model, data, 1.0, torch.device("cpu")) is None
    result = train(config, data.subset([0, 1, 2, 3, 4, 5]), data.subset([6, 7]), tmp_path / "ck", "x", progress=False)
    assert not any(k.startswith("lesion") for k in result.model.state_dict())  # the head is not in the checkpoint
