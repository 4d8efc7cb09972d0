"""Infer subscriber: ``study.preprocessed`` in, per-breast scores and the triage light out."""

from __future__ import annotations

import asyncio
import io
import logging

import numpy as np

from shared.events import BreastResult, ImageRegion, StudyInferred, StudyPreprocessed, follow_up
from shared.runtime import ServiceContext
from services.infer.backends import ModelBackend, build_backend
from services.infer.batching import BreastBatcher
from services.infer.localisation import Localiser, ViewInput
from services.infer.model import TwoViewNet
from services.infer.predictor import BreastInputs, BreastPrediction, TorchPredictor
from services.infer.thresholds import resolve_thresholds
from services.infer.triage import TriageThresholds, triage_light

log = logging.getLogger("mdd.infer")
SERVICE = "infer"
DISCLAIMER = (
    "Modelo de demostración entrenado con fantomas sintéticos; no es un dispositivo clínico "
    "ni sustituye la interpretación del radiólogo. / Demonstration model trained on synthetic "
    "phantoms; not a clinical device and no substitute for the radiologist's reading."
)
UNTRAINED_REASON = "Indeterminado: modelo sin entrenar / Indeterminate: untrained model"
UNTRAINED_DISCLAIMER = (
    "Modelo SIN ENTRENAR (pesos aleatorios): la puntuación no significa nada; solo demuestra el "
    "flujo. / UNTRAINED model (random weights): the score means nothing; it only demonstrates the "
    "pipeline."
)


def build_predictor(ctx: ServiceContext) -> ModelBackend:
    """The model backend chosen by ``MDD_INFER_BACKEND``: torch in process, onnx or triton."""
    settings = ctx.settings
    if settings.infer_backend != "torch":
        return build_backend(settings)
    # MDD_MODEL_WEIGHTS unset: the shipped synthetic-data checkpoint; "untrained": random weights.
    return TorchPredictor.from_setting(settings.model_weights, device=settings.torch_device, backbone=settings.model_backbone)


class InferHandlers:
    """Loads the model inputs of a study, predicts per breast and applies the triage rule."""

    def __init__(self, ctx: ServiceContext, predictor: ModelBackend) -> None:
        self.ctx = ctx
        self.predictor = predictor
        self.batcher = BreastBatcher(
            predictor.predict, ctx.settings.infer_batch_size, ctx.settings.infer_batch_wait_ms / 1000
        )
        # Calibrated thresholds of the checkpoint unless the hospital sets its own (services/infer/thresholds.py).
        self.calibrated_thresholds: tuple[float, float] | None = getattr(predictor, "calibrated_thresholds", None)
        self.thresholds = self.thresholds_for(ctx.settings.hospital_id)
        # Marks come from the network itself, so only an in-process torch model can give them.
        model = getattr(predictor, "model", None)
        self.localiser = Localiser(model) if isinstance(model, TwoViewNet) and predictor.trained else None

    def thresholds_for(self, hospital_id: str | None) -> TriageThresholds:
        """The triage thresholds in force for a study of ``hospital_id``."""
        return resolve_thresholds(self.ctx.settings, self.calibrated_thresholds, hospital_id).triage()

    def _load(self, key: str) -> np.ndarray:
        data = self.ctx.store.get_bytes(self.ctx.settings.bucket_derived, key)
        return np.load(io.BytesIO(data), allow_pickle=False)

    def _breast_inputs(self, event: StudyPreprocessed) -> list[BreastInputs]:
        images: dict[tuple[str, str], np.ndarray] = {}
        for view in event.views:
            if view.laterality in ("R", "L") and view.view_position in ("CC", "MLO"):
                images.setdefault((view.laterality, view.view_position), self._load(view.input_key))
        return [
            BreastInputs(laterality=side, cc=images.get((side, "CC")), mlo=images.get((side, "MLO")))  # type: ignore[arg-type]
            for side in ("R", "L")
            if (side, "CC") in images or (side, "MLO") in images
        ]

    def _regions(
        self, event: StudyPreprocessed, breasts: list[BreastInputs], predictions: list[BreastPrediction]
    ) -> list[ImageRegion]:
        """Where the model looked, for each breast whose score is not low suspicion."""
        if self.localiser is None:
            return []
        low = self.thresholds_for(event.hospital_id).low
        first: dict[tuple[str, str], object] = {}
        for view in event.views:
            first.setdefault((str(view.laterality), str(view.view_position)), view)
        regions: list[ImageRegion] = []
        for breast, prediction in zip(breasts, predictions):
            if prediction.malignancy_score < low:
                continue
            inputs = [
                ViewInput(view.sop_instance_uid, name, image, view.geometry)  # type: ignore[attr-defined]
                for name, image in (("CC", breast.cc), ("MLO", breast.mlo))
                if image is not None
                and (view := first.get((breast.laterality, name))) is not None
                and view.geometry is not None  # type: ignore[attr-defined]
            ]
            regions += self.localiser.regions(breast.laterality, inputs)
        return regions

    def _inferred(self, event: StudyPreprocessed, predictions: list[BreastPrediction]) -> StudyInferred:
        complete = len(predictions) == 2 and all(len(p.views_used) == 2 for p in predictions)
        light, reason = triage_light(predictions, self.thresholds_for(event.hospital_id), complete, event.quality_flags)
        if not self.predictor.trained:
            # Random weights cannot support a suspicious or a reassuring call.
            light, reason = "YELLOW", f"{UNTRAINED_REASON} [{reason}]"
        return follow_up(  # type: ignore[return-value]
            event,
            StudyInferred,
            SERVICE,
            breasts=[
                BreastResult(
                    laterality=p.laterality,
                    malignancy_score=round(float(p.malignancy_score), 4),
                    birads=p.birads,
                    density=p.density,  # type: ignore[arg-type]
                    views_used=p.views_used,
                )
                for p in predictions
            ],
            triage_light=light,
            triage_reason=reason,
            model_name=self.predictor.model_name,
            model_version=self.predictor.model_version,
            model_trained=self.predictor.trained,
            model_trained_on=self.predictor.trained_on,
            disclaimer=DISCLAIMER if self.predictor.trained else UNTRAINED_DISCLAIMER,
        )

    async def on_study_preprocessed(self, event: StudyPreprocessed) -> StudyInferred:
        """Run the model on a preprocessed study, batched with the studies arriving with it."""
        breasts = await asyncio.to_thread(self._breast_inputs, event)
        predictions = await self.batcher.predict(breasts) if breasts else []
        inferred = self._inferred(event, predictions)
        if predictions and (regions := await asyncio.to_thread(self._regions, event, breasts, predictions)):
            inferred = inferred.model_copy(update={"regions": regions})
        log.info("Semáforo de triaje / triage light %s: %s", inferred.triage_light, inferred.triage_reason)
        return inferred
