"""What an end-to-end test needs: processes of the system, a modality (dcmtk), an SMTP sink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiosmtpd.controller import Controller

from infra.servers import dcmtk_tool

T = TypeVar("T")
# The administrator key the services create at first start (MDD_BOOTSTRAP_API_KEY); the API needs a token.
API_KEY = "e2e-bootstrap-admin-key-0001"


@dataclass
class SmtpSink:
    """A real SMTP server on localhost that keeps every message it receives."""

    port: int
    messages: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [message for recipients, message in self.messages if address in recipients]


@contextmanager
def smtp_sink(port: int) -> Iterator[SmtpSink]:
    """Run an ``SmtpSink`` for the duration of the block."""
    sink = SmtpSink(port)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def body_text(message: Message) -> str:
    """The plain-text body of an e-mail, decoded."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            return payload.decode(part.get_content_charset() or "utf-8") if isinstance(payload, bytes) else str(payload)
    return ""


@contextmanager
def mdd_process(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``mdd ARGS`` as its own process; terminate it (then kill) at the end."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, processes: list[tuple[subprocess.Popen[bytes], Path]] = ()) -> T:  # type: ignore[assignment]
    """Poll ``probe`` until it returns a truthy value; fail with the logs of the processes otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process, log in processes:
            if process.poll() is not None:
                raise AssertionError(f"{what}: process exited {process.returncode}\n{log.read_text(errors='replace')[-4000:]}")
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    logs = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for _, log in processes)
    raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}\n{logs}")


def api_json(base_url: str, path: str) -> Any | None:
    """GET a JSON document, or ``None`` when the API is not there yet or answers an error."""
    try:
        response = httpx.get(base_url + path, timeout=5, headers={"Authorization": f"Bearer {API_KEY}"})
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def storescu(folder: Path, port: int, called_ae: str = "MDD", calling_ae: str = "MAMO_SALA1") -> str:
    """Send every DICOM file of a folder with dcmtk's storescu, as a modality would."""
    result = subprocess.run(
        [dcmtk_tool("storescu"), "-v", "-aet", calling_ae, "-aec", called_ae, "+sd", "127.0.0.1", str(port), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"storescu failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def echoscu_ok(port: int, called_ae: str = "MDD") -> bool:
    """True when a C-ECHO to the SCP succeeds."""
    result = subprocess.run(
        [dcmtk_tool("echoscu"), "-aec", called_ae, "127.0.0.1", str(port)], capture_output=True, timeout=30
    )
    return result.returncode == 0


def json_log_lines(log: Path) -> list[dict]:
    """The structured log lines a process wrote."""
    lines = []
    for raw in log.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return lines


def distributed_env(kafka: Any, minio: Any, database_url: str, prefix: str, data_dir: Path, dicom_port: int) -> dict[str, str]:
    """Environment of one distributed deployment on the test servers, isolated by a topic/bucket prefix."""
    from tests.conftest import free_port

    bucket = prefix.rstrip(".")
    return {
        "MDD_TRANSPORT": "kafka",
        "MDD_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "MDD_TOPIC_PREFIX": prefix,
        "MDD_STORE_BACKEND": "minio",
        "MDD_MINIO_ENDPOINT": minio.endpoint,
        "MDD_MINIO_ACCESS_KEY": minio.access_key,
        "MDD_MINIO_SECRET_KEY": minio.secret_key,
        "MDD_BUCKET_DICOM": f"{bucket}-dicom",
        "MDD_BUCKET_DERIVED": f"{bucket}-derived",
        "MDD_BUCKET_RESULTS": f"{bucket}-results",
        "MDD_DATABASE_URL": database_url,
        "MDD_DATA_DIR": str(data_dir),
        "MDD_DICOM_PORT": str(dicom_port),
        "MDD_INGEST_HTTP_PORT": str(free_port()),
    }
