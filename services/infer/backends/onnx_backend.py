"""The ``onnx`` backend: the exported graph on ONNX Runtime, in process (CPU, or CUDA when available)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.infer.backends.base import ExportedModelBackend, Logits
from services.infer.backends.metadata import ExportMetadata, read_metadata
from services.infer.backends.signature import INPUT_NAMES, OUTPUT_NAMES


class OnnxBackend(ExportedModelBackend):
    """Runs ``model_path`` (written by ``mdd export``) with ONNX Runtime; metadata from its sidecar."""

    def __init__(
        self,
        model_path: Path,
        batch_size: int = 16,
        metadata: ExportMetadata | None = None,
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(
                f"No existe el modelo ONNX {model_path} (MDD_ONNX_MODEL_PATH; créalo con `mdd export`) / "
                f"ONNX model {model_path} not found; create it with `mdd export`"
            )
        super().__init__(metadata or read_metadata(model_path), batch_size)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        chosen = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=chosen)
        names = {i.name for i in self.session.get_inputs()}
        if names != set(INPUT_NAMES):
            raise ValueError(f"{model_path}: entradas / inputs {sorted(names)}, se esperaba / expected {list(INPUT_NAMES)}")
        outputs = {o.name for o in self.session.get_outputs()}
        self.served_outputs = tuple(name for name in OUTPUT_NAMES if name in outputs)

    def infer_arrays(self, cc: np.ndarray, mlo: np.ndarray) -> Logits:
        """One ONNX Runtime call on a batch."""
        outputs = self.session.run(list(self.served_outputs), {"cc": cc, "mlo": mlo})
        return {name: np.asarray(value) for name, value in zip(self.served_outputs, outputs)}
