"""Test support for external providers: a real loopback HTTP server that records the webhooks it
receives (the provider's side), and a synthetic study put in the store as ingest would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.events import StudyCompleted, ViewRef, producer
from shared.runtime import ServiceContext
from shared.synth import SyntheticStudy
from shared.object_keys import instance_key


@dataclass
class Received:
    """One request as the provider got it: path, headers (lower-case names) and raw body."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """Records every POST; on a path answers the statuses scripted for it first, then ``default_status``."""

    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    default_status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        """Full URL of a path on this server."""
        return f"{self.base_url}{path}"

    def posts_to(self, path: str) -> list[Received]:
        """The requests received on ``path``."""
        with self.lock:
            return [request for request in self.received if request.path == path]


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Start the receiver on a free loopback port; stop it afterwards."""
    state = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                scripted = state.script.get(self.path)
                status = scripted.pop(0) if scripted else state.default_status
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def stage_study(ctx: ServiceContext, study: SyntheticStudy, hospital_id: str) -> StudyCompleted:
    """Store the study's instances where ingest puts them and return its ``study.completed``."""
    views = []
    for view in study.views:
        dataset = view.dataset
        key = instance_key(hospital_id, study.study_uid, dataset.SeriesInstanceUID, dataset.SOPInstanceUID)
        ctx.store.put_bytes(ctx.settings.bucket_dicom, key, view.to_bytes(), "application/dicom")
        views.append(
            ViewRef(
                sop_instance_uid=dataset.SOPInstanceUID,
                series_instance_uid=dataset.SeriesInstanceUID,
                object_key=key,
                laterality=view.laterality,
                view_position=view.view,
            )
        )
    return StudyCompleted(
        study_uid=study.study_uid,
        hospital_id=hospital_id,
        correlation_id=f"corr-{study.study_uid}",
        accession_number=study.accession_number,
        producer=producer("ingest"),
        patient_key="seudonimo-de-prueba",
        reason="all_views",
        views=views,
    )
