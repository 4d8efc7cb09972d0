"""Preprocess service: segmentation, crop, magma and model input (``mdd serve preprocess``)."""

from __future__ import annotations

from services.preprocess.handlers import SERVICE, PreprocessHandlers
from shared.events import StudyCompleted
from shared.runtime import ServiceContext


def register(ctx: ServiceContext) -> None:
    """Build the segmenter and subscribe the handlers; the service has no other component.

    The segmenter is built here so that a SAM backend without its checkpoint stops the service
    at startup with a message that says how to install it.
    """
    handlers = PreprocessHandlers(ctx)
    ctx.bus.subscribe(StudyCompleted, handlers.on_study_completed, service=SERVICE)


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)
