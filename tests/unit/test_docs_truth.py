"""The README tells the truth about the code: commands first, every setting documented."""

from pathlib import Path

from shared.settings import Settings, settings_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n\n")[1]
    assert "make run" in head and "make test" in head


def test_readme_configuration_table_matches_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme, "regenerate the table with shared.settings.settings_table()"
    for name in Settings.model_fields:
        assert f"`MDD_{name.upper()}`" in readme


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
