"""compose.yaml is a valid Compose file with every service of the distributed mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.provision.access import SERVICES, database_role, minio_user
from infra.provision.secrets_file import SECRETS, init_env, read_env
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SENDERS = '{"MAMO_SALA1": {"hospital_id": "HGE-ENSENADA", "addresses": ["10.1.2.3"]}}'


@pytest.fixture(scope="module")
def deployment_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What an operator has after `mdd secrets init` and naming the sending modalities."""
    env_file = tmp_path_factory.mktemp("deployment") / ".env"
    init_env(env_file)
    return {**read_env(env_file), "MDD_SENDERS": SENDERS}


_DEPLOYMENT_VARIABLES = {spec.name for spec in SECRETS} | {"MDD_SENDERS"}


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
        env={**{k: v for k, v in os.environ.items() if k not in _DEPLOYMENT_VARIABLES}, "DOCKER_CONFIG": config_dir, **(env or {})},
        cwd=ROOT,
    )


def test_compose_file_is_valid_and_describes_the_distributed_mode(deployment_env: dict[str, str]) -> None:
    result = compose_config("--format", "json", env=deployment_env)
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    services = model["services"]
    assert {"kafka", "minio", "postgres", "ingest", "preprocess", "infer", "notify", "status_api"} <= set(services)
    for name in ("ingest", "preprocess", "infer", "notify", "status_api"):
        service = services[name]
        assert service["command"] == ["serve", name]
        assert service["environment"]["MDD_TRANSPORT"] == "kafka"
        assert service["environment"]["MDD_DATABASE_URL"].startswith("postgresql+psycopg://")
    kafka = services["kafka"]  # KRaft with SASL: the script tests/integration/test_compose_kafka.py runs
    assert kafka["entrypoint"] == ["sh", "/opt/mdd/compose-start.sh"]
    assert any(v["source"].endswith("infra/kafka/compose-start.sh") for v in kafka["volumes"])
    assert any(p["target"] == 11112 for p in services["ingest"]["ports"])


def test_compose_includes_triton_with_the_model_repository_from_infra(deployment_env: dict[str, str]) -> None:
    result = compose_config("--format", "json", profiles=("gpu",), env=deployment_env)
    assert result.returncode == 0, result.stderr
    triton = json.loads(result.stdout)["services"]["triton"]
    assert any(v["source"].endswith("infra/triton/model_repository") and v["target"] == "/models" for v in triton["volumes"])


def test_compose_hands_notify_its_rules_file_and_infer_the_triton_server(tmp_path: Path, deployment_env: dict[str, str]) -> None:
    (tmp_path / "reglas.toml").write_text("# reglas del hospital\n")
    env = {**deployment_env, "MDD_CONFIG_DIR": str(tmp_path), "MDD_NOTIFY_RULES_FILE": "/etc/mdd/reglas.toml", "MDD_INFER_BACKEND": "triton"}
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


def test_compose_defaults_leave_the_rules_file_unset_which_the_settings_read_as_none(deployment_env: dict[str, str]) -> None:
    result = compose_config("--format", "json", env=deployment_env)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    environment = services["notify"]["environment"]
    assert environment["MDD_NOTIFY_RULES_FILE"] == ""
    assert services["infer"]["environment"]["MDD_INFER_BACKEND"] == "torch"
    assert Settings(notify_rules_file=environment["MDD_NOTIFY_RULES_FILE"]).notify_rules_file is None


def test_compose_refuses_to_start_without_its_secrets_and_names_the_missing_one(deployment_env: dict[str, str]) -> None:
    bare = compose_config("--format", "json")
    assert bare.returncode != 0
    assert re.search(r"missing [A-Z_]+ - mdd secrets init", bare.stderr), bare.stderr
    for spec in SECRETS:
        without_one = compose_config("--format", "json", env={k: v for k, v in deployment_env.items() if k != spec.name})
        assert without_one.returncode != 0 and spec.name in without_one.stderr, spec.name


def test_every_secret_compose_asks_for_is_one_that_mdd_secrets_init_writes() -> None:
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", (ROOT / "compose.yaml").read_text()))
    assert required == {spec.name for spec in SECRETS} | {"MDD_SENDERS"}


def test_compose_gives_each_service_its_own_credentials_and_publishes_no_back_door(
    deployment_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = compose_config("--format", "json", env=deployment_env)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    published = {name: {p["target"] for p in service.get("ports", [])} for name, service in services.items()}
    assert published["minio"] == {9000} and services["minio"]["environment"]["MINIO_BROWSER"] == "off"
    assert not published.get("status_api") and not published.get("kafka") and not published.get("postgres")
    assert published["proxy"] == {443}
    for name in SERVICES:
        environment = services[name]["environment"]
        assert environment["MDD_MINIO_ACCESS_KEY"] == minio_user(name)
        assert environment["MDD_MINIO_SECRET_KEY"] == deployment_env[f"{name.upper()}_MINIO_SECRET"]
        assert environment["MDD_DATABASE_URL"].startswith(f"postgresql+psycopg://{database_role(name)}:")
        assert environment["MDD_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert deployment_env["MINIO_ROOT_PASSWORD"] not in json.dumps(environment)
        assert deployment_env["POSTGRES_PASSWORD"] not in json.dumps(environment)
        assert services[name]["depends_on"]["provision"]["condition"] == "service_completed_successfully"
    ingest = services["ingest"]["environment"]
    assert ingest["MDD_ACCEPT_UNKNOWN_SENDERS"] == "false" and json.loads(ingest["MDD_SENDERS"]) == json.loads(SENDERS)
    assert ingest["MDD_DICOM_TLS_CERT"] == "/etc/mdd/certs/dicom.crt"
    for name in ("MDD_SENDERS", "MDD_DICOM_HOST", "MDD_ACCEPT_UNKNOWN_SENDERS"):
        monkeypatch.setenv(name, ingest[name])
    assert not Settings().resolved_accept_unknown_senders
