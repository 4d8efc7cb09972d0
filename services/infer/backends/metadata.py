"""The JSON sidecar written beside every exported model: what the model is and what it was trained on.

``twoview.onnx`` gets ``twoview.json``; the ONNX and Triton backends read it so that every
result still says which model produced it and whether it was trained (an untrained model keeps
its lights YELLOW whatever the backend).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from services.infer.backends.signature import INPUT_DIMS, INPUT_NAMES, ONNX_OPSET, OUTPUT_DIMS, OUTPUT_NAMES

UNKNOWN_TRAINING = "desconocido / unknown"


def _default_inputs() -> dict[str, list[int]]:
    return {name: [-1, *INPUT_DIMS] for name in INPUT_NAMES}


def _default_outputs() -> dict[str, list[int]]:
    return {name: [-1, *OUTPUT_DIMS[name]] for name in OUTPUT_NAMES}


class ExportMetadata(BaseModel):
    """Description of an exported model; ``-1`` in a shape is the dynamic batch axis."""

    @property
    def calibrated_thresholds(self) -> tuple[float, float] | None:
        """``(high, low)`` calibrated with the checkpoint, or None."""
        if self.triage_high is None or self.triage_low is None:
            return None
        return (self.triage_high, self.triage_low)

    model_name: str
    model_version: str
    trained: bool
    trained_on: str
    backbone: str
    opset: int = ONNX_OPSET
    inputs: dict[str, list[int]] = Field(default_factory=_default_inputs)
    outputs: dict[str, list[int]] = Field(default_factory=_default_outputs)
    triage_high: float | None = None
    """Triage threshold calibrated with the checkpoint (RED at or above), if it has one."""
    triage_low: float | None = None
    """Triage threshold calibrated with the checkpoint (GREEN below), if it has one."""
    ood_threshold: float | None = None
    """Feature distance above which a view is out of the training distribution, if calibrated."""
    weights_sha256: str | None = None
    torch_version: str = ""
    exported_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def sidecar_path(model_path: Path) -> Path:
    """Where the sidecar of ``model_path`` lives: same folder and stem, ``.json`` suffix."""
    return Path(model_path).with_suffix(".json")


def write_metadata(model_path: Path, metadata: ExportMetadata) -> Path:
    """Write the sidecar of ``model_path`` atomically and return its path."""
    path = sidecar_path(model_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(metadata.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_metadata(model_path: Path) -> ExportMetadata:
    """Read the sidecar of ``model_path``; a clear error names the missing file."""
    path = sidecar_path(model_path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"Falta {path} (lo escribe `mdd export`) / missing model sidecar {path}; run `mdd export`"
        ) from exc
    return ExportMetadata.model_validate(raw)
