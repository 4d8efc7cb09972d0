"""The interface every model backend offers the infer handlers, and the shared array plumbing.

A backend turns the preprocessed views of some breasts into one :class:`BreastPrediction` each.
``torch`` runs the network in process (``TorchPredictor``); ``onnx`` and ``triton`` run the
exported graph and share the batching and post-processing below, so the three give the same
numbers for the same inputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from shared.reliability.errors import Dependency, DependencyUnavailable
from services.infer.backends.metadata import ExportMetadata
from services.infer.backends.signature import OUTPUT_NAMES, REQUIRED_OUTPUT_NAMES
from services.infer.predictor import BreastInputs, BreastPrediction, Logits, predictions_from_logits



class BackendUnavailable(DependencyUnavailable):
    """The model server cannot be reached or is not ready; the message says what to check.

    Transient: a study whose inference meets it waits for the server, spending no attempt.
    """

    def __init__(self, message: str) -> None:
        super().__init__(Dependency.TRITON, message)


@runtime_checkable
class ModelBackend(Protocol):
    """What the infer handlers need from a model, wherever it runs."""

    trained: bool
    trained_on: str
    calibrated_thresholds: tuple[float, float] | None
    """``(high, low)`` triage thresholds calibrated with the checkpoint, or None."""

    @property
    def model_name(self) -> str:
        """Name of the model that produced the predictions."""
        ...

    @property
    def model_version(self) -> str:
        """Version of that model."""
        ...

    def predict(self, breasts: list[BreastInputs]) -> list[BreastPrediction]:
        """One prediction per breast with at least one view, in input order."""
        ...


def usable_breasts(breasts: list[BreastInputs]) -> list[BreastInputs]:
    """The breasts with at least one view (the others cannot be predicted)."""
    return [b for b in breasts if b.cc is not None or b.mlo is not None]


def stack_views(breasts: list[BreastInputs]) -> tuple[np.ndarray, np.ndarray]:
    """``(cc, mlo)`` float32 batches ``N x 3 x H x W``; a missing view is replaced by the other one."""
    ccs = [b.cc if b.cc is not None else b.mlo for b in breasts]
    mlos = [b.mlo if b.mlo is not None else b.cc for b in breasts]
    cc = np.ascontiguousarray(np.stack(ccs).transpose(0, 3, 1, 2), dtype=np.float32)
    mlo = np.ascontiguousarray(np.stack(mlos).transpose(0, 3, 1, 2), dtype=np.float32)
    return cc, mlo


def chunks(items: list[BreastInputs], size: int) -> Iterator[list[BreastInputs]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ExportedModelBackend(ABC):
    """A backend that runs the exported graph on arrays, ``batch_size`` breasts per call."""

    def __init__(self, metadata: ExportMetadata, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size debe ser ≥ 1 / must be ≥ 1: {batch_size}")
        self.metadata = metadata
        self.batch_size = batch_size
        self.trained = metadata.trained
        self.trained_on = metadata.trained_on
        self.calibrated_thresholds = metadata.calibrated_thresholds
        self.ood_threshold = metadata.ood_threshold
        #: The outputs the served graph has (a model exported before ``ood_distance`` lacks it).
        self.served_outputs: tuple[str, ...] = OUTPUT_NAMES

    @property
    def model_name(self) -> str:
        """Model name from the export sidecar."""
        return self.metadata.model_name

    @property
    def model_version(self) -> str:
        """Model version from the export sidecar."""
        return self.metadata.model_version

    @abstractmethod
    def infer_arrays(self, cc: np.ndarray, mlo: np.ndarray) -> Logits:
        """Run the graph on one batch; returns the arrays named in ``served_outputs``."""

    def predict(self, breasts: list[BreastInputs]) -> list[BreastPrediction]:
        """Predict every breast that has at least one view, ``batch_size`` breasts per call."""
        results: list[BreastPrediction] = []
        for part in chunks(usable_breasts(breasts), self.batch_size):
            cc, mlo = stack_views(part)
            logits = self.infer_arrays(cc, mlo)
            missing = [name for name in REQUIRED_OUTPUT_NAMES if name not in logits]
            if missing:
                raise ValueError(f"Faltan salidas del modelo / missing model outputs: {missing}")
            results.extend(predictions_from_logits(part, logits, self.ood_threshold))
        return results
