"""TwoViewNet and TorchPredictor: shapes, probabilities, seeding, checkpoints, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.infer.model import MODEL_NAME, TwoViewNet
from services.infer.predictor import BreastInputs, BreastPrediction, TorchPredictor, save_checkpoint

SHAPE = (336, 224, 3)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(SHAPE, dtype=np.float32)


def _study() -> list[BreastInputs]:
    return [BreastInputs("R", cc=_image(1), mlo=_image(2)), BreastInputs("L", cc=_image(3), mlo=_image(4))]


def _as_vector(pred: BreastPrediction) -> np.ndarray:
    return np.array([pred.malignancy_score, *pred.birads_probs, *pred.density_probs])


@pytest.fixture(scope="module")
def small() -> TorchPredictor:
    return TorchPredictor(backbone="small_cnn", seed=0)


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "small_cnn"])
def test_forward_output_shapes(backbone: str) -> None:
    torch.manual_seed(0)
    net = TwoViewNet(backbone=backbone).eval()
    x = torch.rand(2, 3, 336, 224)
    with torch.inference_mode():
        out = net(x, x.flip(0))
    assert set(out) == {"malignancy_logit", "birads_logits", "density_logits", "ood_distance"}
    assert out["malignancy_logit"].shape == (2,)
    assert out["ood_distance"].shape == (2,) and (out["ood_distance"] >= 0).all()
    assert out["birads_logits"].shape == (2, 7)
    assert out["density_logits"].shape == (2, 4)
    assert all(torch.isfinite(t).all() for t in out.values())


def test_predictions_are_probabilities(small: TorchPredictor) -> None:
    preds = small.predict(_study())
    assert [p.laterality for p in preds] == ["R", "L"]
    for p in preds:
        assert 0.0 <= p.malignancy_score <= 1.0
        assert len(p.birads_probs) == 7 and len(p.density_probs) == 4
        assert sum(p.birads_probs) == pytest.approx(1.0, abs=1e-5)
        assert sum(p.density_probs) == pytest.approx(1.0, abs=1e-5)
        assert min(p.birads_probs) >= 0.0 and min(p.density_probs) >= 0.0
        assert p.birads == int(np.argmax(p.birads_probs))
        assert p.density == "ABCD"[int(np.argmax(p.density_probs))]
        assert p.views_used == ["CC", "MLO"]


def test_untrained_predictor_says_so(small: TorchPredictor) -> None:
    assert small.trained is False
    assert small.trained_on == "sin entrenar / untrained"
    assert TorchPredictor(backbone="efficientnet_b0").model_name == MODEL_NAME == "twoview-effb0"


def test_same_seed_same_outputs_other_seed_differs() -> None:
    a = TorchPredictor(backbone="small_cnn", seed=7).predict(_study())
    torch.manual_seed(12345)  # global RNG state must not leak into the model
    b = TorchPredictor(backbone="small_cnn", seed=7).predict(_study())
    c = TorchPredictor(backbone="small_cnn", seed=8).predict(_study())
    for pa, pb, pc in zip(a, b, c):
        np.testing.assert_array_equal(_as_vector(pa), _as_vector(pb))
        assert np.abs(_as_vector(pa) - _as_vector(pc)).max() > 1e-4


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    source = TorchPredictor(backbone="small_cnn", seed=3)
    path = tmp_path / "models" / "twoview.pt"
    save_checkpoint(source.model, path, {"model_name": "twoview-test", "version": "1.2.3", "trained_on": "CBIS-DDSM"})

    loaded = TorchPredictor(weights_path=path, backbone="efficientnet_b0")  # backbone comes from metadata
    assert loaded.trained is True
    assert loaded.trained_on == "CBIS-DDSM"
    assert (loaded.model_name, loaded.model_version) == ("twoview-test", "1.2.3")
    assert loaded.model.backbone_name == "small_cnn"
    for a, b in zip(source.predict(_study()), loaded.predict(_study())):
        np.testing.assert_array_equal(_as_vector(a), _as_vector(b))


def test_checkpoint_without_trained_on_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trained_on"):
        save_checkpoint(TwoViewNet("small_cnn"), tmp_path / "x.pt", {"model_name": "m", "version": "1"})


def test_missing_mlo_is_filled_from_cc(small: TorchPredictor) -> None:
    cc = _image(5)
    [only_cc] = small.predict([BreastInputs("L", cc=cc)])
    [duplicated] = small.predict([BreastInputs("L", cc=cc, mlo=cc.copy())])
    assert only_cc.views_used == ["CC"]
    np.testing.assert_array_equal(_as_vector(only_cc), _as_vector(duplicated))


def test_breast_without_views_is_skipped(small: TorchPredictor) -> None:
    preds = small.predict([BreastInputs("R"), BreastInputs("L", mlo=_image(6))])
    assert [(p.laterality, p.views_used) for p in preds] == [("L", ["MLO"])]
    assert small.predict([BreastInputs("R")]) == []


def test_batch_equals_single_calls(small: TorchPredictor) -> None:
    study = _study()
    batched = small.predict(study)
    singles = [small.predict([b])[0] for b in study]
    for a, b in zip(batched, singles):
        assert a.laterality == b.laterality
        np.testing.assert_allclose(_as_vector(a), _as_vector(b), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"laterality": "X", "cc": _image(0)},
        {"laterality": "R", "cc": np.zeros((224, 336, 3), np.float32)},
        {"laterality": "R", "mlo": np.full(SHAPE, 255.0, np.float32)},
    ],
    ids=["bad-laterality", "transposed", "not-scaled"],
)
def test_bad_inputs_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BreastInputs(**kwargs)


def test_a_bgr_model_sees_the_channels_the_seed_fed_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.infer.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    torch.manual_seed(1)
    rgb = TwoViewNet(backbone="small_cnn").eval()
    bgr = TwoViewNet(backbone="small_cnn", channel_order="BGR").eval()
    bgr.load_state_dict(rgb.state_dict())
    x = torch.rand(2, 3, 336, 224)
    with torch.inference_mode():
        swapped = rgb.embed(((x - rgb.mean) / rgb.std).flip(1) * rgb.std + rgb.mean)
        torch.testing.assert_close(bgr.embed(x), swapped, rtol=1e-4, atol=1e-5)
    path = tmp_path / "bgr.pt"
    save_checkpoint(bgr, path, {"model_name": "seed", "version": "0", "trained_on": "x"})
    state, meta = load_checkpoint(path)
    assert meta["channel_order"] == "BGR" and model_from_checkpoint(state, meta).channel_order == "BGR"
