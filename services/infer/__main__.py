"""Infer service: the two-view model and the triage rule (``mdd serve infer``)."""

from __future__ import annotations

from shared.events import StudyPreprocessed
from shared.runtime import ServiceContext
from services.infer.handlers import SERVICE, InferHandlers, build_predictor


def register(ctx: ServiceContext) -> None:
    """Load the model once and subscribe the handler."""
    handlers = InferHandlers(ctx, build_predictor(ctx))
    ctx.bus.subscribe(StudyPreprocessed, handlers.on_study_preprocessed, service=SERVICE)


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)
