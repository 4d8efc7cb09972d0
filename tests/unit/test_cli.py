"""The `mdd` command line."""

from pathlib import Path

from pydicom import dcmread
from typer.testing import CliRunner

from services.cli import ADMIN_KEY_FILE, app, distributed_settings, with_admin_key
from shared.settings import Settings

runner = CliRunner()


def test_synth_writes_four_view_studies(tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", str(tmp_path), "--count", "2", "--seed", "5", "--finding", "calcifications"])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.rglob("*.dcm"))
    assert len(files) == 8
    views = {(str(d.ImageLaterality), str(d.ViewPosition)) for d in map(dcmread, files)}
    assert views == {("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")}
    assert len({str(dcmread(f).StudyInstanceUID) for f in files}) == 2


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "serve", "demo", "synth"):
        assert command in result.output


def test_serve_defaults_to_kafka_and_minio_unless_told_otherwise(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MDD_TRANSPORT", raising=False)
    monkeypatch.delenv("MDD_STORE_BACKEND", raising=False)
    settings = distributed_settings()
    assert (settings.transport, settings.store_backend) == ("kafka", "minio")
    monkeypatch.setenv("MDD_STORE_BACKEND", "local")
    assert distributed_settings().store_backend == "local"


def test_unknown_service_is_refused_with_a_reason() -> None:
    result = runner.invoke(app, ["serve", "pacs"])
    assert result.exit_code != 0
    assert "pacs" in result.output


def test_sam_without_checkpoint_is_a_clear_startup_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["up", "--data-dir", str(tmp_path / "var")],
        env={"MDD_SEGMENTATION_BACKEND": "sam", "MDD_LOG_JSON": "false"},
    )
    assert result.exit_code == 2
    assert "SAM" in result.output and "MDD_SAM_CHECKPOINT" in result.output


def test_the_embedded_admin_key_is_made_once_private_and_kept(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MDD_BOOTSTRAP_API_KEY", raising=False)
    first = with_admin_key(Settings(data_dir=tmp_path))
    key_file = tmp_path / ADMIN_KEY_FILE
    assert first.bootstrap_api_key is not None and len(first.bootstrap_api_key.get_secret_value()) >= 32
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = with_admin_key(Settings(data_dir=tmp_path))  # the next `mdd up`
    assert again.bootstrap_api_key == first.bootstrap_api_key
    chosen = with_admin_key(Settings(data_dir=tmp_path, bootstrap_api_key="clave-elegida-por-ti-0123456789"))
    assert chosen.bootstrap_api_key is not None and chosen.bootstrap_api_key.get_secret_value() == "clave-elegida-por-ti-0123456789"
