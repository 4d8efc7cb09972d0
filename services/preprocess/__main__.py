"""Preprocess service: segmentation, crop, magma and model input (``mdd serve preprocess``)."""

from __future__ import annotations

from shared.events import StudyCompleted
from shared.runtime import ServiceContext
from services.preprocess.handlers import SERVICE, PreprocessHandlers


def register(ctx: ServiceContext) -> None:
    """Subscribe the preprocess handlers; the service has no other component."""
    handlers = PreprocessHandlers(ctx)
    ctx.bus.subscribe(StudyCompleted, handlers.on_study_completed, service=SERVICE)


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)
