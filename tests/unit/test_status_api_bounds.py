"""The status API's resource bounds: Argon2 on its own bounded pool (past it, 503 at once) and the web server's limits."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi import HTTPException

from services.status_api.password_workers import WAITING_PER_WORKER, PasswordWorkers
from shared.runtime import WebComponent, WebLimits
from shared.settings import Settings
from shared.web_limits import HeaderDeadlineProtocol


async def test_a_full_queue_answers_503_and_frees_its_places_when_checks_end() -> None:
    workers = PasswordWorkers(1)
    release = threading.Event()
    checks = [asyncio.create_task(workers.run(release.wait, 30)) for _ in range(WAITING_PER_WORKER + 1)]
    await asyncio.sleep(0)  # every check has taken its place
    with pytest.raises(HTTPException) as refused:
        await workers.run(lambda: True)
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "1"}
    assert "Demasiados inicios de sesión" in str(refused.value.detail)
    release.set()
    assert await asyncio.gather(*checks) == [True] * (WAITING_PER_WORKER + 1)
    assert await workers.run(lambda: "de nuevo") == "de nuevo"
    workers.close()


async def test_checks_run_off_the_event_loop_thread() -> None:
    workers = PasswordWorkers(2)
    names = await asyncio.gather(*(workers.run(lambda: threading.current_thread().name) for _ in range(4)))
    assert all(name.startswith("mdd-password") for name in names)
    workers.close()


def test_the_api_web_server_takes_its_limits_from_the_settings() -> None:
    settings = Settings(api_limit_concurrency=123, api_timeout_keep_alive=7, api_header_timeout_seconds=3.5)
    config = WebComponent(object(), "127.0.0.1", 0, limits=WebLimits.of_api(settings)).server.config
    assert (config.limit_concurrency, config.timeout_keep_alive) == (123, 7)
    assert issubclass(config.http, HeaderDeadlineProtocol) and config.http.header_timeout == 3.5
