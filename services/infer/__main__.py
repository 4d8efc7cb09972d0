"""Infer service: the two-view model and the triage rule (``mdd serve infer``)."""

from __future__ import annotations

from shared.events import StudyPreprocessed
from shared.runtime import ServiceContext
from services.infer.handlers import SERVICE, InferHandlers, build_predictor


def register(ctx: ServiceContext) -> None:
    """Load the model once and subscribe the handler."""
    handlers = InferHandlers(ctx, build_predictor(ctx))
    # Several studies in flight at once, so that the batcher can put their breasts in one model call.
    ctx.bus.subscribe(
        StudyPreprocessed,
        handlers.on_study_preprocessed,
        service=SERVICE,
        concurrency=max(1, ctx.settings.infer_batch_size // 2),
    )


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)
