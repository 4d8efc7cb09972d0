"""compose.yaml is a valid Compose file with every service of the distributed mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose_config(
    *args: str, profiles: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`docker compose config` with the project's pinned Compose plugin (built by infra/compose)."""
    config_dir = subprocess.run(
        ["bash", str(ROOT / "infra" / "compose" / "fetch.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    plugin = Path(config_dir) / "cli-plugins" / "docker-compose"
    command = ["docker", "compose"] if shutil.which("docker") else [str(plugin)]
    return subprocess.run(
        [*command, *(f"--profile={p}" for p in profiles), "-f", str(ROOT / "compose.yaml"), "config", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_CONFIG": config_dir, **(env or {})},
        cwd=ROOT,
    )


def test_compose_file_is_valid_and_describes_the_distributed_mode() -> None:
    result = compose_config("--format", "json")
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    services = model["services"]
    assert {"kafka", "minio", "postgres", "ingest", "preprocess", "infer", "notify", "status_api"} <= set(services)
    for name in ("ingest", "preprocess", "infer", "notify", "status_api"):
        service = services[name]
        assert service["command"] == ["serve", name]
        assert service["environment"]["MDD_TRANSPORT"] == "kafka"
        assert service["environment"]["MDD_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert any(p["target"] == 11112 for p in services["ingest"]["ports"])


def test_compose_includes_triton_with_the_model_repository_from_infra() -> None:
    result = compose_config("--format", "json", profiles=("gpu",))
    assert result.returncode == 0, result.stderr
    triton = json.loads(result.stdout)["services"]["triton"]
    assert any(v["source"].endswith("infra/triton/model_repository") and v["target"] == "/models" for v in triton["volumes"])


def test_compose_hands_notify_its_rules_file_and_infer_the_triton_server(tmp_path: Path) -> None:
    (tmp_path / "reglas.toml").write_text("# reglas del hospital\n")
    env = {"MDD_CONFIG_DIR": str(tmp_path), "MDD_NOTIFY_RULES_FILE": "/etc/mdd/reglas.toml", "MDD_INFER_BACKEND": "triton"}
    result = compose_config("--format", "json", profiles=("gpu",), env=env)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    notify = services["notify"]
    assert notify["environment"]["MDD_NOTIFY_RULES_FILE"] == "/etc/mdd/reglas.toml"
    [mount] = [v for v in notify["volumes"] if v["target"] == "/etc/mdd"]
    assert mount["source"] == str(tmp_path) and mount["read_only"] is True
    infer = services["infer"]["environment"]
    assert infer["MDD_INFER_BACKEND"] == "triton" and infer["MDD_TRITON_URL"] == "triton:8001"
    assert 8001 in {port["target"] for port in services["triton"]["ports"]}  # Triton's gRPC port


def test_compose_defaults_leave_the_rules_file_unset_which_the_settings_read_as_none() -> None:
    result = compose_config("--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    environment = services["notify"]["environment"]
    assert environment["MDD_NOTIFY_RULES_FILE"] == ""
    assert services["infer"]["environment"]["MDD_INFER_BACKEND"] == "torch"
    assert Settings(notify_rules_file=environment["MDD_NOTIFY_RULES_FILE"]).notify_rules_file is None
