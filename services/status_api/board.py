"""The traffic-light board: Spanish-first pages served by the API itself (no front-end server).

``/`` is the live board and ``/board/studies/{uid}`` a study's page; both are shells that ask for a token
once (kept in ``sessionStorage``) and read the API with it. Templates and static files are package data.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote, urlencode
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.status_api.schemas import MODEL_NOTICE
from services.status_api.state import STATUS_LABELS

HERE = Path(__file__).parent
DEMO_DISCLAIMER = (
    "Modelo de demostración entrenado con datos sintéticos; no validado clínicamente / "
    "Demonstration model trained on synthetic data; not clinically validated"
)
BIRADS = [
    (0, "Incompleto / incomplete"), (1, "Negativo / negative"), (2, "Benigno / benign"),
    (3, "Probablemente benigno / probably benign"), (4, "Sospechoso / suspicious"),
    (5, "Altamente sugestivo de malignidad / highly suggestive of malignancy"),
    (6, "Malignidad comprobada por biopsia / biopsy-proven malignancy"),
]
_templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["j2", "html"]))

_COLOURS = {"RED": "#d32f2f", "YELLOW": "#f9a825", "GREEN": "#388e3c", None: "#9e9e9e"}
_NAMES = {"RED": "Rojo", "YELLOW": "Amarillo", "GREEN": "Verde", None: "Pendiente"}
_TRIAGE_ORDER = {"RED": 0, "YELLOW": 1, None: 2, "GREEN": 3}


def _light(value: str | None) -> str:
    return (
        f'<span class="light" style="background:{_COLOURS.get(value, "#9e9e9e")}" '
        f'title="{_NAMES.get(value, value)}"></span> {_NAMES.get(value, escape(str(value)))}'
    )


def render_board(studies: list[dict]) -> str:
    """HTML of the board: suspicious studies first, refreshed every few seconds."""
    ordered = sorted(studies, key=lambda s: (_TRIAGE_ORDER.get(s["triage_light"], 2), -s["updated_at"].timestamp()))
    rows = "\n".join(
        f"<tr><td><a href=\"/studies/{quote(s['study_uid'])}?{urlencode({'hospital_id': s['hospital_id']})}\">{escape(s['accession_number'] or s['study_uid'])}</a></td>"
        f"<td>{escape(s['hospital_id'])}</td><td>{escape(s['state_label'])}</td>"
        f"<td>{_light(s['status_light'])}</td><td>{_light(s['triage_light'])}</td>"
        f"<td>{escape(s['triage_reason'] or '')}</td><td>{s['updated_at']:%Y-%m-%d %H:%M:%S}</td></tr>"
        for s in ordered
    )
    return f"""<!doctype html>
<html lang="es-MX"><head><meta charset="utf-8">
<title>Semáforo de mastografías — Mexican Deep DICOM</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.4em;text-align:left}}
.light{{display:inline-block;width:1em;height:1em;border-radius:50%;vertical-align:middle}}
.notice{{background:#fff3e0;padding:.6em;border-left:4px solid #f9a825}}</style></head>
<body><h1>Semáforo de mastografías</h1>
<p class="notice">{escape(MODEL_NOTICE)}</p>
<table><thead><tr><th>Acceso / estudio</th><th>Hospital</th><th>Estado</th><th>Semáforo de estado</th>
<th>Semáforo de triaje</th><th>Motivo</th><th>Actualizado (UTC)</th></tr></thead>
<tbody>
{rows or '<tr><td colspan="7">Sin estudios todavía / no studies yet</td></tr>'}
</tbody></table></body></html>"""


def render_login(deadline_minutes: float = 60.0, hospital_deadlines: dict[str, float] | None = None) -> str:
    """The live board's shell: sign-in form, filters and the table the script fills (nothing about studies).

    The hospitals' result deadlines (minutes since acquisition) go into the page for its waiting column.
    """
    states = [(value, f"{label} ({value})") for value, label in STATUS_LABELS.items()]
    deadlines = json.dumps({"default": deadline_minutes, "hospitals": hospital_deadlines or {}})
    return _templates.get_template("board.html.j2").render(notice=MODEL_NOTICE, states=states, deadlines=deadlines)


def render_study_page(study_uid: str, viewer_template: str) -> str:
    """A study page's shell: the script reads the study with the caller's token."""
    return _templates.get_template("study.html.j2").render(
        notice=MODEL_NOTICE, disclaimer=DEMO_DISCLAIMER, study_uid=study_uid, viewer_template=viewer_template,
        birads=BIRADS,
    )


router = APIRouter(include_in_schema=False)


@router.get("/board/studies/{study_uid}", response_class=HTMLResponse)
def study_page(study_uid: str, request: Request) -> str:
    """La página de un estudio (pide el token) / a study's page (asks for the token)."""
    return render_study_page(study_uid, request.app.state.ctx.settings.viewer_url_template)


def install(app: FastAPI) -> None:
    """Serve the board's pages and its static files (CSS, JavaScript)."""
    app.include_router(router)
    app.mount("/board/static", StaticFiles(directory=HERE / "static"), name="board-static")
