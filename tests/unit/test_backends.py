"""Model backends: torch and onnx give the same predictions and lights; settings pick the backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.infer.backends import BackendUnavailable, ModelBackend, build_backend
from services.infer.backends.onnx_backend import OnnxBackend
from services.infer.backends.triton_backend import TritonBackend
from mlkit.export.exporter import export_all
from services.infer.backends.metadata import read_metadata
from services.infer.predictor import BreastInputs, BreastPrediction, TorchPredictor
from services.infer.triage import TriageThresholds, triage_light
from shared.imaging.pipeline import preprocess_view
from shared.settings import Settings
from shared.synth import SyntheticStudy

TOLERANCE = 1e-4


def study_breasts(study: SyntheticStudy) -> list[BreastInputs]:
    """The model inputs of a synthetic study, through the real preprocessing."""
    inputs = {(v.laterality, v.view): preprocess_view(v.dataset).model_input for v in study.views}
    return [BreastInputs(side, cc=inputs[(side, "CC")], mlo=inputs[(side, "MLO")]) for side in ("R", "L")]  # type: ignore[arg-type]


def as_vector(p: BreastPrediction) -> np.ndarray:
    """Score, both probability vectors and the out-of-distribution score of one prediction."""
    ood = [] if p.ood_score is None else [p.ood_score]
    return np.array([p.malignancy_score, *p.birads_probs, *p.density_probs, *ood])


def assert_same_predictions(got: list[BreastPrediction], expected: list[BreastPrediction]) -> None:
    """Same breasts, same classes, numbers within ``TOLERANCE``."""
    assert [(p.laterality, p.birads, p.density, p.views_used) for p in got] == [
        (p.laterality, p.birads, p.density, p.views_used) for p in expected
    ]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(as_vector(g), as_vector(e), atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small test network exported (seeded, untrained)."""
    return export_all(tmp_path_factory.mktemp("export"), backbone="small_cnn").onnx


@pytest.fixture(scope="module")
def torch_backend() -> TorchPredictor:
    return TorchPredictor(backbone="small_cnn")


@pytest.fixture(scope="module")
def breasts(four_view_study: SyntheticStudy) -> list[BreastInputs]:
    return study_breasts(four_view_study)


def test_onnx_and_torch_agree_on_a_synthetic_study(onnx_path: Path, torch_backend: TorchPredictor, breasts: list[BreastInputs]) -> None:
    onnx_backend = OnnxBackend(onnx_path)
    expected = torch_backend.predict(breasts)
    got = onnx_backend.predict(breasts)
    assert_same_predictions(got, expected)
    thresholds = TriageThresholds()
    assert triage_light(got, thresholds) == triage_light(expected, thresholds)


def test_missing_views_and_batches_are_handled_like_torch(onnx_path: Path, torch_backend: TorchPredictor, breasts: list[BreastInputs]) -> None:
    right, left = breasts
    mixed = [
        BreastInputs("R", cc=right.cc),
        BreastInputs("L"),  # no view: skipped
        BreastInputs("L", mlo=left.mlo),
        right,
        left,
    ]
    expected = torch_backend.predict(mixed)
    assert [p.views_used for p in expected] == [["CC"], ["MLO"], ["CC", "MLO"], ["CC", "MLO"]]
    # One breast per ONNX call gives what one call for all gives.
    assert_same_predictions(OnnxBackend(onnx_path, batch_size=1).predict(mixed), expected)
    assert_same_predictions(OnnxBackend(onnx_path, batch_size=16).predict(mixed), expected)
    assert OnnxBackend(onnx_path).predict([BreastInputs("R")]) == []


def test_onnx_backend_reports_the_exported_model(onnx_path: Path) -> None:
    backend = OnnxBackend(onnx_path)
    assert isinstance(backend, ModelBackend)
    assert (backend.model_name, backend.model_version) == ("twoview-smallcnn", "0.1.0")
    assert backend.trained is False
    assert backend.trained_on == read_metadata(onnx_path).trained_on


def test_settings_pick_the_backend(onnx_path: Path, settings: Settings) -> None:
    assert isinstance(build_backend(settings), TorchPredictor)
    chosen = build_backend(settings.model_copy(update={"infer_backend": "onnx", "onnx_model_path": onnx_path}))
    assert isinstance(chosen, OnnxBackend)


def test_onnx_backend_without_a_model_path_says_what_to_set(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MDD_ONNX_MODEL_PATH"):
        build_backend(settings.model_copy(update={"infer_backend": "onnx"}))
    with pytest.raises(FileNotFoundError, match="mdd export"):
        OnnxBackend(tmp_path / "no-existe.onnx")


def test_triton_backend_with_no_server_fails_clearly(settings: Settings) -> None:
    from tests.conftest import free_port

    closed = f"127.0.0.1:{free_port()}"
    for protocol in ("http", "grpc"):
        with pytest.raises(BackendUnavailable) as info:
            TritonBackend(closed, protocol=protocol, ready_timeout_s=0.5, timeout_s=0.5)  # type: ignore[arg-type]
        message = str(info.value)
        assert closed in message and "MDD_TRITON_URL" in message and "not ready" in message


class _FlakyTriton(TritonBackend):
    """A Triton backend whose first requests fail the way a dropped connection does."""

    def __init__(self, failures: int, retries: int) -> None:
        self.failures = failures
        self.calls = 0
        self.onnx: OnnxBackend | None = None
        super().__init__("127.0.0.1:1", protocol="grpc", retries=retries, backoff_s=0.001)

    def wait_until_ready(self, timeout_s: float) -> None:  # no server in a unit test
        pass

    def _check_signature(self) -> None:
        pass

    def _infer_once(self, cc: np.ndarray, mlo: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionResetError("connection reset by peer")
        assert self.onnx is not None
        return self.onnx.infer_arrays(cc, mlo)


def test_triton_backend_retries_transport_errors(onnx_path: Path, torch_backend: TorchPredictor, breasts: list[BreastInputs]) -> None:
    flaky = _FlakyTriton(failures=2, retries=3)
    flaky.onnx = OnnxBackend(onnx_path)
    assert_same_predictions(flaky.predict(breasts), torch_backend.predict(breasts))
    assert flaky.calls == 3

    hopeless = _FlakyTriton(failures=5, retries=1)
    hopeless.onnx = flaky.onnx
    with pytest.raises(BackendUnavailable, match="2 intento"):
        hopeless.predict(breasts)
    assert hopeless.calls == 2


def test_triton_backend_without_sidecar_counts_as_untrained() -> None:
    backend = _FlakyTriton(failures=0, retries=0)
    assert backend.trained is False
    assert "unknown" in backend.trained_on
