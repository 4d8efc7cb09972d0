"""``mdd provider``: what an operator sees when registering, listing and deactivating providers."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from shared.db import make_engine
from services.cli import app
from services.notify.providers.registry import get_provider

runner = CliRunner()


def _run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["provider", *args], env={"MDD_DATA_DIR": str(data_dir), "COLUMNS": "250"})
    return result.exit_code, result.output


def test_add_prints_the_secret_once_and_list_never_shows_it(tmp_path: Path) -> None:
    code, output = _run(
        tmp_path,
        "add",
        "acme",
        "--nombre",
        "Acme Teleradiología",
        "--hospital",
        "H1",
        "--hospital",
        "H2",
        "--webhook",
        "https://acme.example/mdd",
        "--deidentify",
    )
    assert code == 0, output
    secret = re.search(r"shown only once; keep it\):\n(\S+)\n", output).group(1)  # type: ignore[union-attr]
    engine = make_engine(f"sqlite:///{tmp_path / 'mdd.db'}")
    stored = get_provider(engine, "acme")
    engine.dispose()
    assert stored.webhook_secret == secret and stored.hospitals == ["H1", "H2"] and stored.deidentify
    assert "anonimizado / de-identified" in output
    assert "no genera enlaces de descarga" in output  # embedded store: the operator is warned

    code, listing = _run(tmp_path, "list")
    assert code == 0 and "Acme Teleradiología" in listing and "H1, H2" in listing
    assert secret not in listing


def test_invalid_and_duplicate_providers_are_refused_with_reasons(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "add", "Acme SA", "--nombre", "Acme", "--webhook", "https://a.example")
    assert code == 2
    assert "invalid provider id" in output and "at least one hospital" in output
    code, output = _run(tmp_path, "add", "acme", "--nombre", "Acme", "--hospital", "H1")
    assert code == 2 and "needs a webhook or kafka" in output

    assert (
        _run(
            tmp_path, "add", "acme", "--nombre", "Acme", "--hospital", "H1", "--webhook", "https://a.example"
        )[0]
        == 0
    )
    code, output = _run(
        tmp_path, "add", "acme", "--nombre", "Otra", "--hospital", "H1", "--webhook", "https://b.example"
    )
    assert code == 1 and "ya existe / provider already exists" in output


def test_deactivate_marks_the_provider_inactive(tmp_path: Path) -> None:
    assert (
        _run(
            tmp_path, "add", "acme", "--nombre", "Acme", "--hospital", "H1", "--webhook", "https://a.example"
        )[0]
        == 0
    )
    code, output = _run(tmp_path, "deactivate", "acme")
    assert code == 0 and "desactivado / provider deactivated" in output
    assert re.search(r"acme .*│ no +│", _run(tmp_path, "list")[1])
    code, output = _run(tmp_path, "deactivate", "nadie")
    assert code == 1 and "unknown provider" in output
