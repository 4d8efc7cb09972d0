"""`mdd secrets init`: every secret compose needs, strong and random, kept on a second run, rotated on demand."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from infra.provision.secrets_file import SECRETS, read_env

ROOT = Path(__file__).resolve().parents[2]


def mdd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_secrets_init_writes_every_secret_strong_random_and_owner_only(tmp_path: Path) -> None:
    result = mdd("secrets", "init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    env = tmp_path / ".env"
    values = read_env(env)
    assert set(values) == {spec.name for spec in SECRETS}
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    secret_values = [v for name, v in values.items() if name != "MINIO_ROOT_USER"]
    assert all(len(value) >= 32 for value in secret_values)
    assert len(set(secret_values)) == len(secret_values)  # no two the same

    other = tmp_path / "otra"
    other.mkdir()
    mdd("secrets", "init", cwd=other)
    assert not set(read_env(other / ".env").values()) & set(secret_values)  # random, not a default


def test_secrets_init_keeps_what_is_there_and_rotates_only_what_it_is_told(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("MDD_HOSPITAL_ID=HGE-ENSENADA\nPOSTGRES_PASSWORD=la-del-hospital-que-ya-existia-0123456789\n")
    assert mdd("secrets", "init", cwd=tmp_path).returncode == 0
    first = read_env(env)
    assert first["MDD_HOSPITAL_ID"] == "HGE-ENSENADA"
    assert first["POSTGRES_PASSWORD"] == "la-del-hospital-que-ya-existia-0123456789"

    again = mdd("secrets", "init", cwd=tmp_path)
    assert read_env(env) == first and "ya están" in again.stdout

    assert mdd("secrets", "init", "--rotate", "MDD_AUTH_JWT_SECRET", cwd=tmp_path).returncode == 0
    rotated = read_env(env)
    assert rotated["MDD_AUTH_JWT_SECRET"] != first["MDD_AUTH_JWT_SECRET"]
    assert {k: v for k, v in rotated.items() if k != "MDD_AUTH_JWT_SECRET"} == {k: v for k, v in first.items() if k != "MDD_AUTH_JWT_SECRET"}
    assert env.read_text().count("MDD_AUTH_JWT_SECRET=") == 1

    unknown = mdd("secrets", "init", "--rotate", "NO_EXISTE", cwd=tmp_path)
    assert unknown.returncode == 2 and "NO_EXISTE" in unknown.stdout
