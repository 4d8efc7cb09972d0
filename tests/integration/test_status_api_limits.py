"""The status API under abuse, through a real uvicorn server on loopback (with the service's limits): sign-in
floods and slow clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio.to_thread
import httpx
import pytest

from services.status_api.security import create_user
from shared.runtime import ServiceContext
from shared.settings import Settings
from tests.integration.test_status_api_live import ADMIN_KEY, served

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PASSWORD = "contraseña-segura-1"
FLOOD = 60


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[str, ServiceContext]]:
    """The API served on loopback, with the service's limits and request thread pool (headers due within 2 s)."""
    settings.api_header_timeout_seconds = 2.0
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.database_pool_size
    async with served(settings) as (_, ctx):
        yield f"http://127.0.0.1:{settings.api_port}", ctx


async def test_a_sign_in_flood_does_not_starve_the_other_routes(api: tuple[str, ServiceContext]) -> None:
    base, ctx = api
    create_user(ctx.engine, "doctor_a", PASSWORD, "doctor", ["HOSP-A"])
    limits = httpx.Limits(max_connections=FLOOD + 5, max_keepalive_connections=FLOOD + 5)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        logins = [asyncio.create_task(client.post("/auth/token", data={"username": "doctor_a", "password": PASSWORD}))
                  for _ in range(FLOOD)]
        await asyncio.wait(logins, return_when=asyncio.FIRST_COMPLETED)  # the flood is being worked through
        listed = await client.get("/studies", headers=ADMIN)
        finished_by_then = sum(task.done() for task in logins)
        print(f"inicios de sesión terminados al responder la lista / sign-ins finished when the list answered: "
              f"{finished_by_then}/{FLOOD}")
        assert listed.status_code == 200, listed.text
        # On the request thread pool the list would have waited behind most of the flood's Argon2 checks.
        assert finished_by_then < FLOOD // 2, finished_by_then
        answers = await asyncio.gather(*logins)
    assert [answer.status_code for answer in answers] == [200] * FLOOD


async def test_a_client_that_never_finishes_its_headers_is_disconnected_while_the_api_answers(
    api: tuple[str, ServiceContext],
) -> None:
    base, _ = api
    host, port = base.removeprefix("http://").split(":")
    stalled_reader, stalled = await asyncio.open_connection(host, int(port))
    stalled.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Lento: ")  # and then nothing
    trickle_reader, trickler = await asyncio.open_connection(host, int(port))
    trickler.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    async def trickle() -> None:  # slowloris: a byte every 0.2 s keeps resetting an idle timer, never a deadline
        while not trickler.is_closing():
            trickler.write(b"X-Goteo-")
            try:
                await trickler.drain()
            except ConnectionError:
                return
            await asyncio.sleep(0.2)

    dripping = asyncio.create_task(trickle())
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200  # served while both are hanging
            # The server closes both: reading gives end of file (or a reset), never an answer.
            for reader in (stalled_reader, trickle_reader):
                try:
                    assert await asyncio.wait_for(reader.read(), 30) == b""
                except ConnectionResetError:
                    pass
            assert (await client.get("/healthz")).status_code == 200
    finally:
        dripping.cancel()
        stalled.close()
        trickler.close()


async def test_connections_past_the_limit_are_answered_503(settings: Settings) -> None:
    settings.api_limit_concurrency = 10
    async with served(settings) as (client, _):
        held = [await asyncio.open_connection("127.0.0.1", settings.api_port) for _ in range(10)]
        assert (await client.get("/healthz")).status_code == 503
        for _, writer in held:
            writer.close()
        for _ in range(100):  # the server sees them go
            if (answer := await client.get("/healthz")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert answer.status_code == 200

