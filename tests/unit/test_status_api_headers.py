"""Security headers: every answer is nosniff and unframeable; the board's pages run only their own scripts."""

from __future__ import annotations

from shared.settings import Settings
from tests.unit.test_status_api import client_and_engine


def test_the_board_gets_a_policy_that_runs_only_its_own_scripts_and_every_answer_is_unframeable(settings: Settings) -> None:
    settings.minio_public_url = "https://imagenes.hospital.example.mx:9000"
    client, engine = client_and_engine(settings)
    try:
        for path in ("/", "/board/studies/1.2.840.1", "/board/static/common.js", "/healthz", "/studies", "/docs"):
            response = client.get(path)
            assert response.status_code < 500, path
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["x-frame-options"] == "DENY", path
            assert response.headers["referrer-policy"] == "no-referrer", path
        board = client.get("/").headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in board.split(";"))
        assert directives["script-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
        assert "https://imagenes.hospital.example.mx:9000" in directives["img-src"].split()
        assert "'unsafe-inline'" not in directives["script-src"]
        assert "content-security-policy" not in client.get("/docs").headers  # Swagger UI loads its own scripts
        for page in ("/", "/board/studies/1.2.840.1"):
            assert "<script>" not in client.get(page).text  # nothing inline that the policy would block
    finally:
        engine.dispose()
