"""End to end in the embedded mode: one ``mdd up`` process, no servers but a real SMTP sink."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.synth import SyntheticStudy
from tests.conftest import free_port
from services.cli import ADMIN_KEY_FILE
from tests.e2e.harness import API_KEY, json_log_lines, mdd_process, smtp_sink
from tests.e2e.scenario import RADIOLOGIST, SECOND_HOSPITAL, SECOND_HOSPITAL_SENDERS, run_pipeline_scenario, run_second_hospital_scenario

QUIET_SECONDS = 3


def test_embedded_pipeline_turns_a_pushed_study_into_two_lights(
    tmp_path: Path, study_folder: Path, four_view_study: SyntheticStudy
) -> None:
    api_port, dicom_port, smtp_port = free_port(), free_port(), free_port()
    data_dir = tmp_path / "var"
    # The administrator key a first `mdd up` left in the data folder (this start reuses it; `mdd demo` reads it).
    data_dir.mkdir()
    (data_dir / ADMIN_KEY_FILE).write_text(API_KEY)
    env = {
        "MDD_DATA_DIR": str(data_dir),
        "MDD_API_PORT": str(api_port),
        "MDD_DICOM_PORT": str(dicom_port),
        "MDD_INGEST_HTTP_PORT": str(free_port()),
        "MDD_STUDY_QUIET_SECONDS": str(QUIET_SECONDS),
        "MDD_SMTP_PORT": str(smtp_port),
        "MDD_NOTIFY_EMAILS": f'["{RADIOLOGIST}"]',
        "MDD_SENDERS": SECOND_HOSPITAL_SENDERS,
    }
    log = tmp_path / "mdd-up.log"
    with smtp_sink(smtp_port) as sink, mdd_process(["up"], env, log) as process:
        final = run_pipeline_scenario(
            api=f"http://127.0.0.1:{api_port}",
            dicom_port=dicom_port,
            study=four_view_study,
            folder=study_folder,
            sink=sink,
            processes=[(process, log)],
            quiet_seconds=QUIET_SECONDS,
        )
        # `mdd demo` pushes a new synthetic study to the running system and prints its lights.
        demo = subprocess.run(
            [sys.executable, "-m", "services.cli", "demo", "--port", str(dicom_port), "--api", f"http://127.0.0.1:{api_port}",
             "--seed", "99", "--timeout", "120"],
            capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "200", "MDD_DATA_DIR": str(data_dir)},
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert demo.stdout.count("C-STORE") == 4 and "0x0000" in demo.stdout
        # The demo study has a suspicious mass in the left breast: the shipped synthetic-data model says RED.
        assert "triage RED" in demo.stdout and "state notified" in demo.stdout
        assert "sintétic" in demo.stdout
        # Another hospital sends the same files: its own study, its own lights, the first one untouched.
        second = run_second_hospital_scenario(
            api=f"http://127.0.0.1:{api_port}", dicom_port=dicom_port, study=four_view_study, folder=study_folder,
            sink=sink, processes=[(process, log)], first=final,
        )

    # Derived images are in the local object store, one folder per hospital's study and view.
    for hospital in (final["hospital_id"], second["hospital_id"]):
        derived = data_dir / "store" / "derived" / hospital / four_view_study.study_uid
        for view in four_view_study.views:
            sop = str(view.dataset.SOPInstanceUID)
            assert {p.name for p in (derived / sop).iterdir() if not p.name.endswith(".sha256")} >= {
                "mask.png", "crop.png", "magma.png", "input.npy"
            }
    assert len(final["derived_views"]) == 4
    # Raw instances are stored once per hospital, as received, each under its own hospital.
    assert final["hospital_id"] == "HOSP-DEMO" and second["hospital_id"] == SECOND_HOSPITAL
    for hospital in (final["hospital_id"], second["hospital_id"]):
        raw = sorted((data_dir / "store" / "dicom" / hospital / four_view_study.study_uid).rglob("*.dcm"))
        assert len(raw) == 4
    # Every log line about the study carries its UID and correlation id.
    lines = [line for line in json_log_lines(log) if line.get("study_uid") == four_view_study.study_uid]
    assert lines and all(line["correlation_id"] for line in lines)
