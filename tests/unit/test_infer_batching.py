"""Studies that arrive together share one model call, and each gets its own results back."""

from __future__ import annotations

import asyncio
import io

import numpy as np

from shared.bus import MemoryBus
from shared.events import DerivedView, StudyInferred, StudyPreprocessed, producer
from shared.runtime import ServiceContext
from shared.settings import Settings
from shared.store import LocalStore
from services.infer.__main__ import register
from services.infer.predictor import BreastInputs, BreastPrediction


class RecordingBackend:
    """A model whose score is the mean of the CC image, so results can be traced to their inputs."""

    model_name, model_version, trained, trained_on = "fake", "1", True, "synthetic"
    calibrated_thresholds = None

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, breasts: list[BreastInputs]) -> list[BreastPrediction]:
        self.calls.append(len(breasts))
        return [
            BreastPrediction(b.laterality, float(b.cc.mean()), 1, [0.0] * 7, "A", [1.0, 0, 0, 0], ["CC", "MLO"])  # type: ignore[union-attr]
            for b in breasts
        ]


def _npy(value: float) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.full((336, 224, 3), value, dtype=np.float32))
    return buffer.getvalue()


async def test_concurrent_studies_are_batched_and_results_stay_with_their_study(settings: Settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    backend = RecordingBackend()
    monkeypatch.setattr("services.infer.__main__.build_predictor", lambda ctx: backend)
    batched = settings.model_copy(update={"infer_batch_size": 8, "infer_batch_wait_ms": 200.0})
    store = LocalStore(batched.resolved_store_dir)
    store.ensure_buckets([batched.bucket_derived])
    ctx = ServiceContext(batched, MemoryBus(batched), store, None)  # type: ignore[arg-type]
    results: dict[str, StudyInferred] = {}

    async def collect(event: StudyInferred) -> None:
        results[event.study_uid] = event

    register(ctx)
    ctx.bus.subscribe(StudyInferred, collect, service="status_api")
    await ctx.bus.start()
    for study in range(4):
        views = []
        for side, view in (("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO")):
            value = round(0.1 * study + (0.05 if side == "L" else 0.0), 2)
            key = f"{study}/{side}{view}/input.npy"
            store.put_bytes(batched.bucket_derived, key, _npy(value), "application/octet-stream")
            views.append(DerivedView(sop_instance_uid=f"{study}.{side}{view}", laterality=side, view_position=view,
                                     mask_key="m", crop_key="c", magma_key="g", input_key=key, breast_area_fraction=0.4))
        await ctx.bus.publish(StudyPreprocessed(study_uid=f"1.{study}", hospital_id="H", correlation_id="c",
                                                producer=producer("preprocess"), segmentation_backend="classic", views=views))
    await asyncio.wait_for(ctx.bus.drain(), 30)
    await ctx.bus.stop()

    assert sum(backend.calls) == 8 and max(backend.calls) > 2  # breasts of several studies in one call
    for study in range(4):
        scores = {b.laterality: b.malignancy_score for b in results[f"1.{study}"].breasts}
        assert scores == {"R": round(0.1 * study, 2), "L": round(0.1 * study + 0.05, 2)}
