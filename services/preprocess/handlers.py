"""Preprocess subscriber: ``study.completed`` in, derived images stored, ``study.preprocessed`` out."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterable
from typing import Final

import numpy as np
from pydicom import dcmread

from shared.dicom_vocabulary import STANDARD_VIEWS, has_standard_views
from shared.events import DerivedView, StudyCompleted, StudyPreprocessed, ViewGeometry, ViewRef, follow_up
from shared.imaging.pipeline import PreprocessedView, derived_files, npy_bytes, orient, preprocess_view
from shared.imaging.segmentation import Segmenter, build_segmenter
from shared.runtime import ServiceContext
from shared.object_keys import derived_prefix

log = logging.getLogger("mdd.preprocess")
SERVICE = "preprocess"
STANDARD_VIEW_COUNT: Final[int] = len(STANDARD_VIEWS)


def study_flags(views: Iterable[DerivedView]) -> list[str]:
    """Quality flags of a study: every view's flags plus ``fewer_than_four_views``.

    The study is short of views when R-CC, L-CC, R-MLO and L-MLO are not all among its views
    (two copies of one view do not make up for a missing one).
    """
    views = list(views)
    flags = {flag for view in views for flag in view.flags}
    if not has_standard_views((view.laterality, view.view_position) for view in views):
        flags.add("fewer_than_four_views")
    return sorted(flags)


def view_geometry(result: PreprocessedView) -> ViewGeometry | None:
    """Where the view's model input lies in its stored image; ``None`` when its laterality is unknown."""
    if result.laterality is None:
        return None
    # Ask the pipeline's own orientation rule whether it mirrored this breast: a two-pixel probe.
    mirrored = bool(orient(np.array([[1, 0]], dtype=np.uint8), result.laterality)[0, 0] == 0)
    rows, columns = result.mask.shape[:2]
    top, bottom, left, right = (int(edge) for edge in result.bbox)
    return ViewGeometry(rows=rows, columns=columns, top=top, bottom=bottom, left=left, right=right, mirrored=mirrored)


class PreprocessHandlers:
    """Reads each view from the store, runs the pipeline and writes the outputs back.

    The segmenter is built here, once, when the service registers: a SAM backend without its
    checkpoint fails at startup instead of at the first study.
    """

    def __init__(self, ctx: ServiceContext, segmenter: Segmenter | None = None) -> None:
        self.ctx = ctx
        self.segmenter = segmenter if segmenter is not None else build_segmenter(ctx.settings)

    def _process_view(self, hospital_id: str, study_uid: str, view: ViewRef) -> DerivedView:
        settings = self.ctx.settings
        dataset = dcmread(io.BytesIO(self.ctx.store.get_bytes(settings.bucket_dicom, view.object_key)))
        result: PreprocessedView = preprocess_view(dataset, self.segmenter, settings.decode_max_bytes)
        prefix = derived_prefix(hospital_id, study_uid, view.sop_instance_uid)
        for name, (data, content_type) in derived_files(result).items():
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
            geometry=view_geometry(result),
            not_evaluable=[gate.value for gate in result.not_evaluable],
        )

    async def on_study_completed(self, event: StudyCompleted) -> StudyPreprocessed:
        """Preprocess every view of a completed study (outputs are keyed, so reruns overwrite)."""
        derived = [await asyncio.to_thread(self._process_view, event.hospital_id, event.study_uid, view) for view in event.views]
        flags = study_flags(derived)
        log.info("Estudio preprocesado / study preprocessed: %d vistas, banderas %s", len(derived), flags)
        return follow_up(  # type: ignore[return-value]
            event,
            StudyPreprocessed,
            SERVICE,
            segmentation_backend=self.segmenter.name,
            views=derived,
            quality_flags=flags,
        )


__all__ = ["SERVICE", "STANDARD_VIEWS", "PreprocessHandlers", "npy_bytes", "study_flags"]
