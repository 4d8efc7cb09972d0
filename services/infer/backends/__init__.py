"""Model backends of the infer service, chosen by ``MDD_INFER_BACKEND``: torch, onnx or triton."""

from __future__ import annotations

from services.infer.backends.base import BackendUnavailable, ModelBackend
from services.infer.backends.factory import build_backend

__all__ = ["BackendUnavailable", "ModelBackend", "build_backend"]
