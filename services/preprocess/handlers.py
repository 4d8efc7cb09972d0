"""Preprocess subscriber: ``study.completed`` in, derived images stored, ``study.preprocessed`` out."""

from __future__ import annotations

import asyncio
import io
import logging

import numpy as np
from pydicom import dcmread

from shared.events import DerivedView, StudyCompleted, StudyPreprocessed, ViewRef, follow_up
from shared.runtime import ServiceContext
from services.preprocess.pipeline import PreprocessedView, png_bytes, preprocess_view

log = logging.getLogger("mdd.preprocess")
SERVICE = "preprocess"
STANDARD_VIEW_COUNT = 4


def npy_bytes(array: np.ndarray) -> bytes:
    """Serialise an array in NumPy's ``.npy`` format."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class PreprocessHandlers:
    """Reads each view from the store, runs the pipeline and writes the outputs back."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def _process_view(self, study_uid: str, view: ViewRef) -> DerivedView:
        settings = self.ctx.settings
        dataset = dcmread(io.BytesIO(self.ctx.store.get_bytes(settings.bucket_dicom, view.object_key)))
        result: PreprocessedView = preprocess_view(dataset)
        prefix = f"{study_uid}/{view.sop_instance_uid}"
        outputs = {
            "mask.png": (png_bytes(result.mask.astype(np.uint8) * 255), "image/png"),
            "crop.png": (png_bytes(result.crop), "image/png"),
            "magma.png": (png_bytes(result.magma), "image/png"),
            "input.npy": (npy_bytes(result.model_input), "application/octet-stream"),
        }
        for name, (data, content_type) in outputs.items():
            self.ctx.store.put_bytes(settings.bucket_derived, f"{prefix}/{name}", data, content_type)
        return DerivedView(
            sop_instance_uid=view.sop_instance_uid,
            laterality=result.laterality,
            view_position=result.view,
            mask_key=f"{prefix}/mask.png",
            crop_key=f"{prefix}/crop.png",
            magma_key=f"{prefix}/magma.png",
            input_key=f"{prefix}/input.npy",
            breast_area_fraction=float(result.breast_area_fraction),
            flags=list(result.flags),
        )

    async def on_study_completed(self, event: StudyCompleted) -> StudyPreprocessed:
        """Preprocess every view of a completed study (outputs are keyed, so reruns overwrite)."""
        derived = [await asyncio.to_thread(self._process_view, event.study_uid, view) for view in event.views]
        flags = sorted({flag for view in derived for flag in view.flags})
        if len(derived) < STANDARD_VIEW_COUNT:
            flags.append("fewer_than_four_views")
        log.info("Estudio preprocesado / study preprocessed: %d vistas, banderas %s", len(derived), flags)
        return follow_up(  # type: ignore[return-value]
            event,
            StudyPreprocessed,
            SERVICE,
            segmentation_backend=self.ctx.settings.segmentation_backend,
            views=derived,
            quality_flags=flags,
        )
