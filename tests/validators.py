"""Independent judges of what the project writes: dicom3tools' ``dciodvfy`` and dcmtk's ``dsrdump``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from infra.servers import dcmtk_tool, dicom3tools_tool


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """The errors and the warnings ``dciodvfy`` reports for a DICOM file, as printed."""
    result = subprocess.run(
        [dicom3tools_tool("dciodvfy"), "-new", str(path)], capture_output=True, text=True, timeout=120
    )
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    return errors, warnings


def dsrdump(path: Path) -> str:
    """dcmtk's rendering of a Structured Report; raises with its output when it cannot read the file."""
    result = subprocess.run([dcmtk_tool("dsrdump"), str(path)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"dsrdump failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout
