"""`mdd export`: TorchScript, ONNX and a Triton repository that all compute what the torch model computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

from services.cli import app
from services.infer.backends.onnx_backend import OnnxBackend
from services.infer.checkpoint import save_checkpoint
from mlkit.export.exporter import export_all
from services.infer.backends.metadata import read_metadata
from services.infer.model import TwoViewNet
from services.infer.predictor import TorchPredictor

OUTPUTS = ["malignancy_logit", "birads_logits", "density_logits", "ood_distance"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default (EfficientNet-B0, untrained) model exported by the real command."""
    out = tmp_path_factory.mktemp("export")
    result = CliRunner().invoke(
        app, ["export", "--out", str(out), "--weights", "untrained", "--backbone", "efficientnet_b0", "--max-batch-size", "8"]
    )
    assert result.exit_code == 0, result.output
    assert "SIN ENTRENAR" in result.output
    return out


def _torch_logits(cc: torch.Tensor, mlo: torch.Tensor) -> dict[str, np.ndarray]:
    model = TorchPredictor(backbone="efficientnet_b0").model
    with torch.no_grad():
        out = model(cc, mlo)
    return {k: v.numpy() for k, v in out.items()}


def _random_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 336, 224, generator=g), torch.rand(n, 3, 336, 224, generator=g)


def test_export_writes_every_form(exported: Path) -> None:
    for name in (
        "twoview.torchscript.pt",
        "twoview.onnx",
        "twoview.json",
        "triton/twoview/config.pbtxt",
        "triton/twoview/1/model.onnx",
    ):
        assert (exported / name).is_file(), name
    assert (exported / "triton/twoview/1/model.onnx").read_bytes() == (exported / "twoview.onnx").read_bytes()


def test_onnx_runtime_matches_torch_on_random_inputs(exported: Path) -> None:
    # A batch size the export never saw: the batch axis must be dynamic.
    cc, mlo = _random_batch(5, seed=11)
    expected = _torch_logits(cc, mlo)
    session = ort.InferenceSession(str(exported / "twoview.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip(OUTPUTS, session.run(OUTPUTS, {"cc": cc.numpy(), "mlo": mlo.numpy()})))
    assert got["malignancy_logit"].shape == (5, 1)
    assert got["birads_logits"].shape == (5, 7)
    assert got["density_logits"].shape == (5, 4)
    assert got["ood_distance"].shape == (5, 1)
    np.testing.assert_allclose(got["malignancy_logit"][:, 0], expected["malignancy_logit"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["birads_logits"], expected["birads_logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["density_logits"], expected["density_logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["ood_distance"][:, 0], expected["ood_distance"], atol=1e-4, rtol=1e-4)


def test_torchscript_matches_torch(exported: Path) -> None:
    cc, mlo = _random_batch(3, seed=12)
    expected = _torch_logits(cc, mlo)
    scripted = torch.jit.load(str(exported / "twoview.torchscript.pt"))
    with torch.no_grad():
        malignancy, birads, density, distance = scripted(cc, mlo)
    np.testing.assert_allclose(distance.numpy()[:, 0], expected["ood_distance"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(malignancy.numpy()[:, 0], expected["malignancy_logit"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(birads.numpy(), expected["birads_logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(density.numpy(), expected["density_logits"], atol=1e-4, rtol=0)


def test_onnx_graph_has_opset_17_or_more_and_a_dynamic_batch(exported: Path) -> None:
    model = onnx.load(str(exported / "twoview.onnx"))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    for tensor in [*model.graph.input, *model.graph.output]:
        first = tensor.type.tensor_type.shape.dim[0]
        assert first.dim_param and not first.dim_value, tensor.name


def _dims(tensor: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in tensor.type.tensor_type.shape.dim[1:]]


def test_triton_config_parses_and_matches_the_onnx_graph(exported: Path) -> None:
    config = text_format.Parse(
        (exported / "triton/twoview/config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    graph = onnx.load(str(exported / "triton/twoview/1/model.onnx")).graph
    assert config.name == "twoview"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert config.HasField("dynamic_batching")
    assert all(b <= 8 for b in config.dynamic_batching.preferred_batch_size)
    for declared, actual in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in declared] == [t.name for t in actual]
        for t, g in zip(declared, actual):
            assert list(t.dims) == _dims(g), t.name
            assert t.data_type == model_config_pb2.TYPE_FP32
            assert g.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [t.name for t in config.input] == ["cc", "mlo"]
    assert [t.name for t in config.output] == OUTPUTS


def test_sidecar_describes_an_untrained_model(exported: Path) -> None:
    meta = read_metadata(exported / "twoview.onnx")
    assert meta.trained is False
    assert meta.model_name == "twoview-effb0"
    assert meta.backbone == "efficientnet_b0"
    assert meta.opset >= 17
    assert meta.inputs == {"cc": [-1, 3, 336, 224], "mlo": [-1, 3, 336, 224]}
    assert json.loads((exported / "triton/twoview/1/model.json").read_text())["trained"] is False


def test_export_of_a_checkpoint_keeps_its_weights_and_provenance(tmp_path: Path) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = TwoViewNet(backbone="small_cnn")
    weights = tmp_path / "model.pt"
    save_checkpoint(
        model,
        weights,
        {
            "model_name": "twoview-smallcnn",
            "version": "9.9.9",
            "trained_on": "fantomas seed 3",
            "triage_high": "0.42",
            "triage_low": "0.07",
            "ood_threshold": "12.5",
        },
    )
    result = export_all(tmp_path / "out", weights_path=weights)
    meta = read_metadata(result.onnx)
    assert (meta.trained, meta.trained_on, meta.model_version) == (True, "fantomas seed 3", "9.9.9")
    assert (meta.calibrated_thresholds, meta.ood_threshold) == ((0.42, 0.07), 12.5)
    backend = OnnxBackend(result.onnx)
    assert (backend.trained, backend.trained_on, backend.calibrated_thresholds) == (True, "fantomas seed 3", (0.42, 0.07))
    assert backend.ood_threshold == 12.5 and "ood_distance" in backend.served_outputs
    assert meta.weights_sha256 is not None and len(meta.weights_sha256) == 64
    assert result.max_difference < 1e-4
    cc, mlo = _random_batch(2, seed=13)
    with torch.no_grad():
        expected = model.eval()(cc, mlo)["birads_logits"].numpy()
    session = ort.InferenceSession(str(result.triton_model), providers=["CPUExecutionProvider"])
    (birads,) = session.run(["birads_logits"], {"cc": cc.numpy(), "mlo": mlo.numpy()})
    np.testing.assert_allclose(birads, expected, atol=1e-4, rtol=0)


def test_missing_sidecar_says_to_run_export(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mdd export"):
        read_metadata(tmp_path / "nada.onnx")
