"""The `mdd` command line."""

from pathlib import Path

from pydicom import dcmread
from typer.testing import CliRunner

from services.cli import app, distributed_settings

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
