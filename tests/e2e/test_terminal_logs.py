"""``mdd up`` at a terminal: readable log lines (JSON only when asked), and a quiet exit with no library noise."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e


def run_at_a_terminal(tmp_path: Path, extra_env: dict[str, str]) -> tuple[int, str]:
    """Start ``mdd up`` with a pseudo-terminal as its output, wait until its API answers, interrupt it
    as Ctrl+C does, and return its exit code and everything it printed."""
    api_port = free_port()
    env = {**os.environ, "MDD_DATA_DIR": str(tmp_path / "var"), "MDD_API_PORT": str(api_port),
           "MDD_DICOM_PORT": str(free_port()), "MDD_INGEST_HTTP_PORT": str(free_port()), "COLUMNS": "160"}
    env.pop("MDD_LOG_JSON", None)
    env.update(extra_env)
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    output = bytearray()

    def read_available(wait: float) -> None:
        while select.select([leader], [], [], wait)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is gone
                return
            if not chunk:
                return
            output.extend(chunk)
            wait = 0.05

    try:
        deadline = time.monotonic() + 120
        while True:
            read_available(0.3)
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, output.decode(errors="replace")[-3000:]
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            read_available(0.3)
        read_available(0.3)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        os.close(leader)
    return process.returncode, output.decode("utf-8", errors="replace")


def test_mdd_up_prints_readable_lines_at_a_terminal_and_exits_quietly(tmp_path: Path) -> None:
    code, output = run_at_a_terminal(tmp_path, {})
    lines = [line.strip() for line in output.replace("\r", "").splitlines() if line.strip()]
    assert code == 0, output[-3000:]
    assert not [line for line in lines if line.startswith("{")], "JSON lines on a terminal"
    assert any("INFO" in line and "SCP DICOM escuchando" in line for line in lines), output[-3000:]
    assert "nanobind" not in output and "leaked" not in output and "Traceback" not in output


def test_mdd_up_writes_json_lines_when_asked_even_at_a_terminal(tmp_path: Path) -> None:
    code, output = run_at_a_terminal(tmp_path, {"MDD_LOG_JSON": "true"})
    logs = [line.strip() for line in output.replace("\r", "").splitlines() if line.strip().startswith("{")]
    assert code == 0 and logs and all('"level"' in line and '"logger"' in line for line in logs)
