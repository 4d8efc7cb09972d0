"""Infer subscriber: ``study.preprocessed`` in, per-breast scores and the triage light out."""

from __future__ import annotations

import asyncio
import io
import logging

import numpy as np

from shared.events import BreastResult, DerivedView, ImageRegion, NotEvaluated, StudyInferred, StudyPreprocessed, follow_up
from shared.imaging.applicability import NotEvaluable
from shared.runtime import ServiceContext
from services.infer.backends import ModelBackend, build_backend
from services.infer.batching import BreastBatcher
from services.infer.localisation import Localiser, ViewInput
from services.infer.model import TwoViewNet
from services.infer.predictor import BreastInputs, BreastPrediction, TorchPredictor
from services.infer.thresholds import resolve_thresholds
from services.infer.triage import SIDES, Reason, TriageThresholds, triage_light, unscored_breast

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


BREAST_WITHOUT_TWO_VIEWS = "breast_without_two_views"


def _where(view: DerivedView) -> Reason:
    side = SIDES.get(view.laterality or "")
    position = f" {view.view_position}" if view.view_position else ""
    if side is None:
        return (f"imagen {view.sop_instance_uid}", f"image {view.sop_instance_uid}")
    return (f"{side[0]}{position}", f"{side[1]}{position}")


def not_evaluated_views(views: list[DerivedView]) -> list[NotEvaluated]:
    """One entry per image and reason that a gate kept from the model (codes of unknown gates kept as they are)."""
    items = []
    for view in views:
        for code in view.not_evaluable:
            es, en = _where(view)
            try:
                gate_es, gate_en = NotEvaluable(code).parts
            except ValueError:
                gate_es = gate_en = code
            items.append(
                NotEvaluated(
                    laterality=view.laterality,
                    view_position=view.view_position,
                    sop_instance_uid=view.sop_instance_uid,
                    reason=code,
                    label=f"no evaluable por IA: {gate_es} ({es}) / not evaluable by AI: {gate_en} ({en})",
                )
            )
    return items


def _reason(item: NotEvaluated) -> Reason:
    spanish, _, english = item.label.partition(" / ")
    return (spanish, english)


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
        """The breasts with an evaluable CC and an evaluable MLO; no other breast is shown to the model."""
        slots: dict[tuple[str, str], DerivedView] = {}
        for view in event.views:
            if not view.not_evaluable and view.laterality in ("R", "L") and view.view_position in ("CC", "MLO"):
                slots.setdefault((view.laterality, view.view_position), view)
        return [
            BreastInputs(
                laterality=side,  # type: ignore[arg-type]
                cc=self._load(slots[(side, "CC")].input_key),
                mlo=self._load(slots[(side, "MLO")].input_key),
            )
            for side in ("R", "L")
            if (side, "CC") in slots and (side, "MLO") in slots
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
            if not view.not_evaluable:  # the views the model was shown (see _breast_inputs)
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
        not_evaluated = not_evaluated_views(event.views)
        scored = {p.laterality for p in predictions}
        reasons = [_reason(item) for item in not_evaluated]
        not_evaluated += [
            NotEvaluated(
                laterality=side,
                reason=BREAST_WITHOUT_TWO_VIEWS,
                label=" / ".join(unscored_breast(side)),
            )
            for side in ("R", "L")
            if side not in scored
        ]
        light, reason = triage_light(predictions, self.thresholds_for(event.hospital_id), reasons, event.quality_flags)
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
                    ood_score=round(p.ood_score, 4) if p.ood_score is not None else None,
                    in_distribution=p.in_distribution if p.ood_score is not None else None,
                )
                for p in predictions
            ],
            not_evaluated=not_evaluated,
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
