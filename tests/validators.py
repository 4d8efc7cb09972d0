"""Independent judges of what the project writes: dicom3tools' ``dciodvfy``, dcmtk's ``dsrdump`` and
HAPI FHIR's instance validator (FHIR R4, run by the JDK from the jars infra/fhir/fetch.sh caches)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from infra.servers import dcmtk_tool, dicom3tools_tool, hapi_fhir_libs

FHIR_VALIDATOR = Path(__file__).resolve().parents[1] / "infra" / "fhir"


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


def fhir_validate(paths: list[Path]) -> dict[str, list[dict[str, str]]]:
    """HAPI FHIR's R4 instance validator over several files in one run: the issues of each file.

    Each issue has ``severity`` (``error``, ``warning``, ``information``), ``location`` and ``message``.
    """
    libs = hapi_fhir_libs()
    java = shutil.which("java")
    if java is None:
        raise FileNotFoundError("java (JDK 17+) not found on PATH; run infra/setup-debian.sh")
    result = subprocess.run(
        [java, "-cp", f"{libs}/*", str(FHIR_VALIDATOR / "Validate.java"), *map(str, paths)],
        capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        raise AssertionError(f"the FHIR validator failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}")
    issues: dict[str, list[dict[str, str]]] = {str(path): [] for path in paths}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            found = json.loads(line)
            if found["severity"] != "ok":
                issues[found["file"]].append(found)
    return issues
