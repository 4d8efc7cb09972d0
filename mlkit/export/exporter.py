"""Export a TwoViewNet to TorchScript, ONNX and a Triton model repository.

Every exported form has the serving signature of ``signature.py``: inputs ``cc`` and ``mlo``
(float32 ``N x 3 x 336 x 224`` in 0..1), outputs ``malignancy_logit`` (``N x 1``),
``birads_logits`` (``N x 7``), ``density_logits`` (``N x 4``) and ``ood_distance`` (``N x 1``),
with a dynamic batch axis.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor, nn

from services.infer.backends.metadata import ExportMetadata, write_metadata
from services.infer.backends.signature import (
    INPUT_DIMS,
    INPUT_NAMES,
    ONNX_OPSET,
    OUTPUT_NAMES,
    TRITON_MODEL_NAME,
)
from mlkit.export.triton_config import triton_config
from services.infer.model import TwoViewNet
from services.infer.predictor import TorchPredictor

TORCHSCRIPT_FILE = "twoview.torchscript.pt"
ONNX_FILE = "twoview.onnx"
TRITON_DIR = "triton"


class ServingModule(nn.Module):
    """TwoViewNet with tuple outputs in ``OUTPUT_NAMES`` order (``N x 1`` for the two scalars)."""

    def __init__(self, model: TwoViewNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, cc: Tensor, mlo: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Logits and the out-of-distribution distance of each breast of the batch."""
        out = self.model(cc, mlo)
        return (
            out["malignancy_logit"].unsqueeze(1), out["birads_logits"], out["density_logits"],
            out["ood_distance"].unsqueeze(1),
        )


class ExportResult(BaseModel):
    """Paths written by :func:`export_all`."""

    torchscript: Path
    onnx: Path
    metadata: Path
    triton_repository: Path
    triton_config: Path
    triton_model: Path
    max_difference: float
    """Largest |torch - ONNX Runtime| logit difference on random inputs."""
    trained: bool
    trained_on: str


def example_inputs(batch: int = 2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random ``cc`` and ``mlo`` batches in 0..1 (seeded, own RNG)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, *INPUT_DIMS)
    return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)


def metadata_of(predictor: TorchPredictor, weights_path: Path | None) -> ExportMetadata:
    """The sidecar content for the model a predictor holds."""
    digest = hashlib.sha256(Path(weights_path).read_bytes()).hexdigest() if weights_path else None
    calibrated = getattr(predictor, "calibrated_thresholds", None)
    return ExportMetadata(
        model_name=predictor.model_name,
        model_version=predictor.model_version,
        trained=predictor.trained,
        trained_on=predictor.trained_on,
        backbone=predictor.model.backbone_name,
        triage_high=calibrated[0] if calibrated else None,
        triage_low=calibrated[1] if calibrated else None,
        ood_threshold=getattr(predictor, "ood_threshold", None),
        weights_sha256=digest,
        torch_version=torch.__version__,
    )


def export_torchscript(model: TwoViewNet, path: Path) -> Path:
    """Trace the serving module to TorchScript at ``path`` (CPU)."""
    module = ServingModule(model).cpu().eval()
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit is deprecated upstream but TorchScript is still what C++/LibTorch runtimes load.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example_inputs())
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return path


def export_onnx(model: TwoViewNet, path: Path, opset: int = ONNX_OPSET) -> Path:
    """Export the serving module to one self-contained ONNX file with a dynamic batch axis."""
    if opset < 17:
        raise ValueError(f"opset {opset} < 17 no soportado / not supported")
    module = ServingModule(model).cpu().eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            example_inputs(),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={name: {0: batch} for name in INPUT_NAMES},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    assert program is not None
    program.save(str(tmp), external_data=False)
    os.replace(tmp, path)
    return path


def max_onnx_difference(model: TwoViewNet, onnx_path: Path, batch: int = 3, seed: int = 1) -> float:
    """Largest absolute difference between torch and ONNX Runtime logits on random inputs."""
    import onnxruntime as ort

    cc, mlo = example_inputs(batch, seed)
    with torch.no_grad():
        expected = [t.numpy() for t in ServingModule(model).cpu().eval()(cc, mlo)]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {"cc": cc.numpy(), "mlo": mlo.numpy()})
    return max(float(np.abs(np.asarray(g) - e).max()) for g, e in zip(got, expected))


def write_triton_repository(
    onnx_path: Path,
    metadata: ExportMetadata,
    repository: Path,
    model_name: str = TRITON_MODEL_NAME,
    max_batch_size: int = 16,
    version: int = 1,
) -> tuple[Path, Path]:
    """Lay out ``<repository>/<model_name>/config.pbtxt`` and ``<version>/model.onnx`` (+ sidecar).

    Returns ``(config_path, model_path)``.
    """
    model_dir = repository / model_name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    model_path = version_dir / "model.onnx"
    shutil.copyfile(onnx_path, model_path)
    write_metadata(model_path, metadata)
    config_path = model_dir / "config.pbtxt"
    config_path.write_text(triton_config(model_name, max_batch_size), encoding="utf-8")
    return config_path, model_path


def export_all(
    out_dir: Path,
    weights_path: Path | None = None,
    backbone: str = "efficientnet_b0",
    triton_repository: Path | None = None,
    model_name: str = TRITON_MODEL_NAME,
    max_batch_size: int = 16,
    opset: int = ONNX_OPSET,
) -> ExportResult:
    """Export the checkpoint at ``weights_path`` (or the seeded untrained model) in every form.

    Writes ``twoview.torchscript.pt``, ``twoview.onnx`` with its ``twoview.json`` sidecar, and a
    Triton repository (``<out_dir>/triton`` unless ``triton_repository`` is given).
    """
    predictor = TorchPredictor(weights_path, device="cpu", backbone=backbone)
    model = predictor.model
    metadata = metadata_of(predictor, weights_path).model_copy(update={"opset": opset})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torchscript = export_torchscript(model, out_dir / TORCHSCRIPT_FILE)
    onnx_path = export_onnx(model, out_dir / ONNX_FILE, opset=opset)
    sidecar = write_metadata(onnx_path, metadata)
    repository = Path(triton_repository) if triton_repository else out_dir / TRITON_DIR
    config_path, model_path = write_triton_repository(
        onnx_path, metadata, repository, model_name=model_name, max_batch_size=max_batch_size
    )
    return ExportResult(
        torchscript=torchscript,
        onnx=onnx_path,
        metadata=sidecar,
        triton_repository=repository,
        triton_config=config_path,
        triton_model=model_path,
        max_difference=max_onnx_difference(model, onnx_path),
        trained=predictor.trained,
        trained_on=predictor.trained_on,
    )
