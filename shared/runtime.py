"""Running services: build the shared context from settings, start components, stop cleanly.

``mdd up`` runs every service's component in one process on one context (embedded mode);
``mdd serve NAME`` runs one. Service code only sees the ``ServiceContext`` it is given.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.engine import Engine

from shared.bus import Bus, build_bus
from shared.db import make_engine
from shared.settings import Settings
from shared.store import ObjectStore, build_store

log = logging.getLogger("mdd.runtime")


@dataclass
class ServiceContext:
    """The adapters a service gets: settings, broker, object store and database engine."""

    settings: Settings
    bus: Bus
    store: ObjectStore
    engine: Engine
    ready: dict[str, bool] = field(default_factory=dict)


class Component(Protocol):
    """A running piece of a service (an SCP, a web server, a watcher)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


Registrar = Callable[[ServiceContext], Component | None]


class ComponentGroup:
    """Several components of one service, started in order and stopped in reverse."""

    def __init__(self, components: list[Component]) -> None:
        self.components = components

    async def start(self) -> None:
        for component in self.components:
            await component.start()

    async def stop(self) -> None:
        for component in reversed(self.components):
            await component.stop()


@dataclass(frozen=True)
class WebLimits:
    """Bounds of a web server: open connections (503 past it), idle keep-alive and the headers' deadline."""

    concurrency: int
    keep_alive_seconds: int
    header_seconds: float

    @classmethod
    def of_api(cls, settings: Settings) -> WebLimits:
        """The status API's bounds (``MDD_API_LIMIT_CONCURRENCY``, ``MDD_API_TIMEOUT_KEEP_ALIVE``,
        ``MDD_API_HEADER_TIMEOUT_SECONDS``)."""
        return cls(settings.api_limit_concurrency, settings.api_timeout_keep_alive, settings.api_header_timeout_seconds)


class WebComponent:
    """Runs an ASGI application with uvicorn inside the service's event loop."""

    def __init__(
        self, app: object, host: str, port: int, reuse_port: bool = False, forwarded_allow_ips: list[str] | None = None,
        limits: WebLimits | None = None,
    ) -> None:
        """``forwarded_allow_ips``: proxies whose ``X-Forwarded-*`` headers set the client address and scheme
        (None: uvicorn's default, ``$FORWARDED_ALLOW_IPS`` or 127.0.0.1); ``limits``: connections and timeouts
        (None: uvicorn's defaults, no header deadline)."""
        import uvicorn

        from shared.web_limits import header_deadline_protocol

        bounds: dict[str, object] = {}
        if limits is not None:
            bounds = {"limit_concurrency": limits.concurrency, "timeout_keep_alive": limits.keep_alive_seconds,
                      "http": header_deadline_protocol(limits.header_seconds)}
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, lifespan="off",  # type: ignore[arg-type]
            proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips, **bounds,  # type: ignore[arg-type]
        )
        self.server = uvicorn.Server(config)
        self.host, self.port, self.reuse_port = host, port, reuse_port
        self._task: asyncio.Task[None] | None = None

    def _shared_socket(self) -> socket.socket:
        """A listening socket that other processes may bind too (SO_REUSEPORT: the kernel spreads connections)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, self.port))
        return sock

    async def start(self) -> None:
        sockets = [self._shared_socket()] if self.reuse_port else None
        self._task = asyncio.create_task(self.server.serve(sockets=sockets))
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("El servidor web no arrancó / web server did not start")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task:
            await self._task


def build_context(settings: Settings, client_id: str = "mdd") -> ServiceContext:
    """Adapters chosen by settings (memory or Kafka, folder or MinIO, SQLite or PostgreSQL)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url, settings.database_pool_size)
    return ServiceContext(
        settings=settings,
        bus=build_bus(settings, client_id=client_id, engine=engine),
        store=build_store(settings),
        engine=engine,
    )


async def run_until_stopped(ctx: ServiceContext, registrars: list[Registrar], stop_event: asyncio.Event | None = None) -> None:
    """Register every service, start the bus and the components, and wait for SIGINT/SIGTERM."""
    components = [component for registrar in registrars if (component := registrar(ctx)) is not None]
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop_event.set)
        except (NotImplementedError, RuntimeError):
            pass
    await ctx.bus.start()
    started: list[Component] = []
    try:
        for component in components:
            await component.start()
            started.append(component)
        ctx.ready["all"] = True
        # Modules, models and the app live as long as the process: moved out of the collector's
        # reach, a full collection no longer walks them (it paused a busy API for 150 ms and more).
        gc.freeze()
        log.info("Servicios listos / services ready")
        await stop_event.wait()
    finally:
        log.info("Deteniendo / stopping")
        for component in reversed(started):
            try:
                await component.stop()
            except Exception:
                log.exception("Error al detener / error while stopping %r", component)
        await ctx.bus.stop()
        ctx.engine.dispose()
