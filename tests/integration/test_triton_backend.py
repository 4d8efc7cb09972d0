"""The triton backend against real KServe v2 servers running the exported model: the Triton Inference
Server that PyPI's nvidia-pytriton ships (HTTP with binary tensors, and gRPC), and MLServer."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from dataclasses import dataclass

from infra.mlserver import mlserver_server
from infra.pytriton_server import triton_server
from services.infer.backends import BackendUnavailable, build_backend
from services.infer.backends.onnx_backend import OnnxBackend
from services.infer.backends.triton_backend import TritonBackend
from services.infer.checkpoint import save_checkpoint
from mlkit.export.exporter import ExportResult, export_all
from services.infer.backends.metadata import read_metadata
from services.infer.handlers import InferHandlers, build_predictor
from services.infer.model import TwoViewNet
from services.infer.predictor import BreastInputs, TorchPredictor
from services.infer.triage import TriageThresholds, triage_light
from shared.imaging.pipeline import preprocess_view
from shared.events import DerivedView, StudyPreprocessed, producer
from shared.runtime import build_context
from shared.settings import Settings
from shared.store import build_store
from shared.synth import SyntheticStudy
from tests.unit.test_backends import assert_same_predictions, study_breasts

pytestmark = pytest.mark.integration


TRAINED_ON = "fantomas de prueba / test phantoms"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small checkpoint with calibrated thresholds (seeded weights standing in for a trained model)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        net = TwoViewNet(backbone="small_cnn")
    path = tmp_path_factory.mktemp("weights") / "twoview.pt"
    metadata = {"model_name": "twoview-smallcnn", "version": "0.0.1", "trained_on": TRAINED_ON}
    save_checkpoint(net, path, {**metadata, "triage_high": "0.49", "triage_low": "0.2", "ood_threshold": "40"})
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> ExportResult:
    return export_all(tmp_path_factory.mktemp("export"), weights_path=checkpoint)


@dataclass(frozen=True)
class Server:
    """A running KServe v2 server and how to talk to it over HTTP."""

    kind: str
    http_url: str
    grpc_url: str
    binary_data: bool


@pytest.fixture(scope="module", params=["triton", "mlserver"])
def server(request: pytest.FixtureRequest, exported: ExportResult) -> Iterator[Server]:
    """Triton (binary tensors over HTTP) or MLServer (JSON tensors) serving the Triton repository's model;
    fails the tests when it cannot start."""
    if request.param == "triton":
        with triton_server(exported.triton_repository / "twoview") as info:
            yield Server("triton", info.http_url, info.grpc_url, binary_data=True)
    else:
        with mlserver_server(exported.triton_repository / "twoview") as info:
            yield Server("mlserver", info.http_url, info.grpc_url, binary_data=False)


@pytest.fixture(scope="module")
def breasts(four_view_study: SyntheticStudy) -> list[BreastInputs]:
    return study_breasts(four_view_study)


def _url(server: Server, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_backend_matches_torch_and_onnx(
    protocol: str, server: Server, exported: ExportResult, checkpoint: Path, breasts: list[BreastInputs]
) -> None:
    metadata = read_metadata(exported.onnx)
    backend = TritonBackend(_url(server, protocol), protocol=protocol, model_name="twoview", metadata=metadata,  # type: ignore[arg-type]
                            binary_data=server.binary_data)
    torch_predictions = TorchPredictor(checkpoint).predict(breasts)
    onnx_predictions = OnnxBackend(exported.onnx).predict(breasts)
    triton_predictions = backend.predict(breasts)

    assert_same_predictions(triton_predictions, torch_predictions)
    assert_same_predictions(triton_predictions, onnx_predictions)
    assert all(p.ood_score is not None for p in triton_predictions)  # the served graph has the distance output
    thresholds = TriageThresholds()
    for breasts_shown in (slice(None), slice(0, 1)):
        lights = {
            name: triage_light(predictions[breasts_shown], thresholds)
            for name, predictions in (("torch", torch_predictions), ("onnx", onnx_predictions), ("triton", triton_predictions))
        }
        assert lights["triton"] == lights["torch"] == lights["onnx"], lights
    assert (backend.model_name, backend.trained, backend.trained_on) == ("twoview-smallcnn", True, TRAINED_ON)
    assert backend.calibrated_thresholds == (0.49, 0.2)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_settings_build_a_working_triton_backend(
    protocol: str, server: Server, exported: ExportResult, breasts: list[BreastInputs], settings: Settings
) -> None:
    configured = settings.model_copy(
        update={
            "infer_backend": "triton",
            "triton_url": _url(server, protocol),
            "triton_protocol": protocol,
            "triton_model_name": "twoview",
            "onnx_model_path": exported.onnx,
            "infer_batch_size": 1,
            "triton_binary_data": server.binary_data,
        }
    )
    backend = build_backend(configured, ready_timeout_s=10)
    assert isinstance(backend, TritonBackend)
    # One breast per request, one study in two requests: same numbers as in process.
    assert_same_predictions(backend.predict(breasts), OnnxBackend(exported.onnx).predict(breasts))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_readiness_timeout_names_the_missing_model(protocol: str, server: Server) -> None:
    with pytest.raises(BackendUnavailable) as info:
        TritonBackend(_url(server, protocol), protocol=protocol, model_name="no-such-model", ready_timeout_s=1.0)  # type: ignore[arg-type]
    message = str(info.value)
    assert "no-such-model" in message and "not ready after 1 s" in message
    assert "MDD_TRITON_MODEL_NAME" in message


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_backend_serves_the_handler_threads(protocol: str, server: Server, breasts: list[BreastInputs]) -> None:
    """The infer handler calls predict from worker threads, several at a time."""
    from concurrent.futures import ThreadPoolExecutor

    backend = TritonBackend(_url(server, protocol), protocol=protocol, model_name="twoview",  # type: ignore[arg-type]
                            binary_data=server.binary_data)
    expected = backend.predict(breasts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: backend.predict(breasts), range(8)))
    for got in results:
        assert_same_predictions(got, expected)


def _preprocessed_event(settings: Settings, study: SyntheticStudy) -> StudyPreprocessed:
    """The study's model inputs in the derived bucket and the event preprocess would publish."""
    store = build_store(settings)
    views = []
    for view in study.views:
        uid = str(view.dataset.SOPInstanceUID)
        key = f"derived/{study.study_uid}/{uid}/input.npy"
        buffer = io.BytesIO()
        np.save(buffer, preprocess_view(view.dataset).model_input, allow_pickle=False)
        store.put_bytes(settings.bucket_derived, key, buffer.getvalue(), "application/octet-stream")
        views.append(
            DerivedView(
                sop_instance_uid=uid,
                laterality=view.laterality,
                view_position=view.view,
                mask_key=key,
                crop_key=key,
                magma_key=key,
                input_key=key,
                breast_area_fraction=0.5,
            )
        )
    return StudyPreprocessed(
        study_uid=study.study_uid,
        hospital_id=study.hospital_id,
        correlation_id=study.study_uid,
        producer=producer("preprocess"),
        segmentation_backend="classic",
        views=views,
    )


def test_the_infer_service_gives_the_same_light_with_every_backend(
    server: Server, exported: ExportResult, checkpoint: Path, settings: Settings, four_view_study: SyntheticStudy
) -> None:
    event = _preprocessed_event(settings, four_view_study)
    configurations = {
        "torch": {"infer_backend": "torch", "model_weights": checkpoint, "model_backbone": "small_cnn"},
        "onnx": {"infer_backend": "onnx", "onnx_model_path": exported.onnx},
        **{
            f"triton-{protocol}": {
                "infer_backend": "triton",
                "triton_url": _url(server, protocol),
                "triton_protocol": protocol,
                "triton_model_name": "twoview",
                "onnx_model_path": exported.onnx,
                "triton_binary_data": server.binary_data,
            }
            for protocol in ("http", "grpc")
        },
    }
    results = {}
    for name, update in configurations.items():
        ctx = build_context(settings.model_copy(update=update))
        results[name] = asyncio.run(InferHandlers(ctx, build_predictor(ctx)).on_study_preprocessed(event))
    reference = results["torch"]
    # The checkpoint's calibrated high threshold (0.49) turns this study RED; 0.5 would not.
    assert reference.triage_light == "RED", reference.triage_reason
    for name, inferred in results.items():
        assert (inferred.triage_light, inferred.triage_reason) == (reference.triage_light, reference.triage_reason), name
        assert (inferred.model_name, inferred.model_trained, inferred.model_trained_on) == (
            "twoview-smallcnn",
            True,
            TRAINED_ON,
        ), name
        assert [(b.laterality, b.birads, b.density) for b in inferred.breasts] == [
            (b.laterality, b.birads, b.density) for b in reference.breasts
        ], name
        for got, expected in zip(inferred.breasts, reference.breasts):
            assert got.malignancy_score == pytest.approx(expected.malignancy_score, abs=2e-4), name
