"""Logging keeps working when a CLI runner swaps stderr for a stream it closes afterwards."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from shared.logs import configure_logging


def test_records_go_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    configure_logging("INFO", json_lines=False)  # configured while a runner's stream is stderr
    swapped.close()  # the runner is done
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    logging.getLogger("mdd.test").warning("sigue funcionando / still working")
    assert "sigue funcionando" in now.getvalue() and "Logging error" not in now.getvalue()
