"""compose.yaml's TLS front: nginx with the very server block compose mounts, certificates this test makes.

Everything HTTP — the API, /dicomweb and /uploads — is reached over HTTPS only, the API believes the
front's X-Forwarded-Proto (DICOMweb URLs say https), and uploads stream through it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import trustme

from infra.servers import INFRA_DIR, free_ports, nginx_server
from shared.settings import Settings
from shared.synth import make_study
from tests.integration.test_upload_doors import HOSPITAL, STOW_TYPE, ZIP, doors_open, stow_body, zip_of

TEMPLATE = INFRA_DIR / "proxy" / "mdd.conf.template"


def server_block(port: int, api_port: int, cert: Path, key: Path) -> str:
    """The template as nginx's image renders it (envsubst of the MDD_* variables compose sets)."""
    values = {"MDD_TLS_CERT": str(cert), "MDD_TLS_KEY": str(key), "MDD_API_UPSTREAM": f"127.0.0.1:{api_port}",
              "MDD_PROXY_BODY_LIMIT": "64m"}
    text = re.sub(r"\$\{(MDD_[A-Z_]+)\}", lambda m: values[m.group(1)], TEMPLATE.read_text())
    assert "listen 443 ssl" in text
    return text.replace("listen 443 ssl", f"listen 127.0.0.1:{port} ssl")


async def test_the_tls_front_serves_the_api_and_its_doors_over_https_only(settings: Settings, tmp_path: Path) -> None:
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    issued.private_key_pem.write_to_path(str(tmp_path / "api.key"))
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "api.crt"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (port,) = free_ports(1)
    block = server_block(port, settings.api_port, tmp_path / "api.crt", tmp_path / "api.key")
    study, other = make_study(seed=15_301, hospital_id=HOSPITAL), make_study(seed=15_302, hospital_id=HOSPITAL)
    async with doors_open(settings) as doors:
        front = nginx_server(block, port)
        await asyncio.to_thread(front.__enter__)
        try:
            base = f"https://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, verify=str(tmp_path / "ca.pem"), timeout=60) as https:
                health = await https.get("/healthz")
                assert health.status_code == 200 and "max-age" in health.headers["strict-transport-security"]
                report = await https.post("/uploads", content=zip_of(study), headers={**ZIP, **doors.as_("uploader")})
                assert report.status_code == 200 and report.json()["stored"] == 4
                stow = await https.post("/dicomweb/studies", content=stow_body(other),
                                        headers={"Content-Type": STOW_TYPE, **doors.as_("doctor")})
                assert stow.status_code == 200
                urls = [item["00081190"]["Value"][0] for item in stow.json()["00081199"]["Value"]]
                assert all(url.startswith(f"{base}/dicomweb/studies/") for url in urls)
            async with httpx.AsyncClient(timeout=10) as plain:
                refused = await plain.get(f"http://127.0.0.1:{port}/healthz")
            assert refused.status_code == 400  # nginx: plain HTTP sent to the HTTPS port
            async with httpx.AsyncClient(base_url=base, verify=True, timeout=10) as untrusting:
                try:
                    await untrusting.get("/healthz")
                except httpx.ConnectError as exc:
                    assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
                else:
                    raise AssertionError("a client that does not trust the hospital's CA must not connect")
        finally:
            await asyncio.to_thread(front.__exit__, None, None, None)
