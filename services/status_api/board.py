"""The traffic-light board: a Spanish page served by the API itself (no front-end server)."""

from __future__ import annotations

from html import escape

from services.status_api.schemas import MODEL_NOTICE

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
        f"<tr><td><a href=\"/studies/{escape(s['study_uid'])}\">{escape(s['accession_number'] or s['study_uid'])}</a></td>"
        f"<td>{escape(s['hospital_id'])}</td><td>{escape(s['state_label'])}</td>"
        f"<td>{_light(s['status_light'])}</td><td>{_light(s['triage_light'])}</td>"
        f"<td>{escape(s['triage_reason'] or '')}</td><td>{s['updated_at']:%Y-%m-%d %H:%M:%S}</td></tr>"
        for s in ordered
    )
    return f"""<!doctype html>
<html lang="es-MX"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
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
