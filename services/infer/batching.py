"""Batching across the stream: breasts of studies that arrive together share one model call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.infer.predictor import BreastInputs, BreastPrediction

Predict = Callable[[list[BreastInputs]], list[BreastPrediction]]


class BreastBatcher:
    """Collects the breasts of concurrent studies for up to ``wait_seconds`` (or ``max_breasts``),
    runs the model once on all of them off the event loop, and hands each study its own results."""

    def __init__(self, predict: Predict, max_breasts: int, wait_seconds: float) -> None:
        self._predict = predict
        self.max_breasts = max_breasts
        self.wait_seconds = wait_seconds
        self._pending: list[tuple[list[BreastInputs], asyncio.Future[list[BreastPrediction]]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.batch_sizes: list[int] = []

    async def predict(self, breasts: list[BreastInputs]) -> list[BreastPrediction]:
        """Predictions for ``breasts``, in order, possibly computed together with other studies'."""
        future: asyncio.Future[list[BreastPrediction]] = asyncio.get_running_loop().create_future()
        self._pending.append((breasts, future))
        if sum(len(group) for group, _ in self._pending) >= self.max_breasts:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.wait_seconds, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if pending:
            asyncio.get_running_loop().create_task(self._run(pending))

    async def _run(self, pending: list[tuple[list[BreastInputs], asyncio.Future[list[BreastPrediction]]]]) -> None:
        combined = [breast for group, _ in pending for breast in group]
        self.batch_sizes.append(len(combined))
        try:
            results = await asyncio.to_thread(self._predict, combined)
            if len(results) != len(combined):
                raise RuntimeError("El modelo omitió mamas del lote / the model skipped breasts of the batch")
        except Exception as exc:  # every study of the batch fails and is retried by the bus
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for group, future in pending:
            if not future.done():
                future.set_result(results[start : start + len(group)])
            start += len(group)
