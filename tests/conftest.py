"""Fixtures every test layer shares: settings on a temporary folder, free ports, synthetic studies."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.synth import SyntheticStudy, make_study


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_outage_left_over() -> Iterator[None]:
    """Each test starts with no dependency marked down by an earlier one (the registry is per process)."""
    from shared.reliability.health import HEALTH

    HEALTH.clear()
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-mode settings on a temporary data folder and free ports."""
    return Settings(
        data_dir=tmp_path / "var",
        dicom_port=free_port(),
        api_port=free_port(),
        ingest_http_port=free_port(),
        study_quiet_seconds=2,
        retry_backoff_seconds=0.01,
        dependency_retry_max_seconds=0.2,
        model_backbone="small_cnn",
        log_json=False,
    )


@pytest.fixture(scope="session")
def four_view_study() -> SyntheticStudy:
    """A small synthetic screening study with a mass in the left breast."""
    return make_study(seed=7, finding="mass", finding_laterality="L")


@pytest.fixture
def study_folder(tmp_path: Path, four_view_study: SyntheticStudy) -> Iterator[Path]:
    """The synthetic study written as four .dcm files."""
    folder = tmp_path / "study"
    four_view_study.save(folder)
    yield folder


# --- Real servers, started once per test session by the project's own launchers (infra/servers.py).
# A test that needs a server fails when the server cannot start: the launchers raise.


@pytest.fixture(scope="session")
def kafka():  # type: ignore[no-untyped-def]
    """A real single-node Apache Kafka broker in KRaft mode."""
    from infra.servers import kafka_server

    with kafka_server() as info:
        yield info


@pytest.fixture(scope="session")
def minio():  # type: ignore[no-untyped-def]
    """A real MinIO server."""
    from infra.servers import minio_server

    with minio_server() as info:
        yield info


@pytest.fixture(scope="session")
def postgres():  # type: ignore[no-untyped-def]
    """A real PostgreSQL server with an empty ``mdd`` database."""
    from infra.servers import postgres_server

    with postgres_server() as info:
        yield info


@pytest.fixture
def postgres_url(postgres) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty database on the session's PostgreSQL server, so tests never see each other's rows."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def orthanc():  # type: ignore[no-untyped-def]
    """A real Orthanc PACS (Debian package)."""
    from infra.servers import orthanc_server

    with orthanc_server() as info:
        yield info
