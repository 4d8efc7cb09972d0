"""Build the backend that ``MDD_INFER_BACKEND`` names from the settings."""

from __future__ import annotations

from services.infer.backends.base import ModelBackend
from shared.settings import Settings


def build_backend(settings: Settings, ready_timeout_s: float = 60.0) -> ModelBackend:
    """``torch`` (in process), ``onnx`` (``MDD_ONNX_MODEL_PATH``) or ``triton`` (``MDD_TRITON_*``).

    The triton backend reads the exported model's sidecar from ``MDD_ONNX_MODEL_PATH`` when it is
    set, so results name the model the server runs; without it the model counts as untrained.
    It waits up to ``ready_timeout_s`` for the server and the model to be ready.
    """
    if settings.infer_backend == "torch":
        from services.infer.predictor import TorchPredictor

        return TorchPredictor.from_setting(
            settings.model_weights, device=settings.torch_device, backbone=settings.model_backbone
        )
    if settings.infer_backend == "onnx":
        from services.infer.backends.onnx_backend import OnnxBackend

        if settings.onnx_model_path is None:
            raise ValueError(
                "MDD_INFER_BACKEND=onnx necesita MDD_ONNX_MODEL_PATH (créelo con `mdd export`) / "
                "needs MDD_ONNX_MODEL_PATH (create it with `mdd export`)"
            )
        return OnnxBackend(settings.onnx_model_path, batch_size=settings.infer_batch_size)
    if settings.infer_backend == "triton":
        from services.infer.backends.triton_backend import TritonBackend
        from services.infer.backends.metadata import read_metadata

        metadata = read_metadata(settings.onnx_model_path) if settings.onnx_model_path else None
        return TritonBackend(
            settings.triton_url,
            protocol=settings.triton_protocol,
            model_name=settings.triton_model_name,
            metadata=metadata,
            timeout_s=settings.triton_timeout_seconds,
            retries=settings.triton_retries,
            binary_data=settings.triton_binary_data,
            ready_timeout_s=ready_timeout_s,
            batch_size=settings.infer_batch_size,
        )
    raise ValueError(f"MDD_INFER_BACKEND desconocido / unknown: {settings.infer_backend!r}")
