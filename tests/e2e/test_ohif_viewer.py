"""OHIF reads our DICOMweb: the prebuilt OHIF 3.13 viewer (npm ``@ohif/app``) in a real headless Chromium.

A four-view study goes in by STOW-RS to the API's ``/dicomweb``, the base URL OHIF reads; the status API serves DICOMweb on one origin and
OHIF is served on another with the ``app-config.js`` of docs/dicomweb.md (the API allows OHIF's origin,
MDD_CORS_ALLOW_ORIGINS). A doctor sees the study in OHIF's study list and the mammogram in its viewer,
and the API answers every DICOMweb request OHIF makes with 2xx; a doctor of another hospital, or a bad
token, sees no study. Then the other documented layout: nginx (Debian's) serves OHIF and forwards
``/dicomweb/`` to the API on one origin, adding the viewer's key only for a browser signed in with the
hospital; the key never reaches the browser and the audit log names the browser, not the proxy.

Screenshots go to ``$MDD_TEST_ARTIFACTS`` (default: the test's tmp folder); their paths are printed.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from infra.servers import free_ports, nginx_server, ohif_dist
from services.ingest.__main__ import IngestComponent
from services.status_api.__main__ import register as register_status_api
from services.status_api.security import create_api_key
from shared.runtime import Component, ServiceContext, WebComponent, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy
from tests.e2e.browser import Exchange, NetworkLog, artefacts_dir, browse, chromium

pytestmark = pytest.mark.e2e
T = TypeVar("T")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "dicomweb.md"
DOCUMENTED_API = "https://mdd.hospital.example.mx"
HOSPITAL = "HOSP-DEMO"  # the ingest's default hospital for STOW-RS
WAIT_S = 120  # OHIF's bundles are large and Chromium renders without a GPU
PROXY_ADDRESS = "127.0.0.2"  # nginx's side of its connections to the API (Linux answers all of 127/8)
SSO_COOKIE, SSO_SESSION = "sesion-hospital", "sesion-firmada-de-prueba"
STUDY_ROWS_JS = """return [...document.querySelectorAll('tbody tr:not([data-filter-row])')]
  .map((row) => [...row.querySelectorAll('td')].map((cell) => cell.innerText.trim()));"""


def documented_blocks(language: str) -> list[str]:
    """The fenced ``language`` code blocks of docs/dicomweb.md."""
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)


def documented_config(api_root: str) -> str:
    """The ``app-config.js`` of docs/dicomweb.md, pointed at ``api_root``."""
    [config] = documented_blocks("js")
    assert f"{DOCUMENTED_API}/dicomweb" in config
    return config.replace(DOCUMENTED_API, api_root)


def ohif_site(dist: Path, app_config: str) -> Starlette:
    """OHIF's prebuilt files with our ``app-config.js``; a path that is no file gets ``index.html``."""
    root = dist.resolve()

    async def page(request: Request) -> Response:
        path = request.path_params["path"]
        if path == "app-config.js":
            return Response(app_config, media_type="text/javascript")
        target = (root / path).resolve()
        if path and target.is_file() and root in target.parents:
            return FileResponse(target)
        return FileResponse(root / "index.html")

    return Starlette(routes=[Route("/{path:path}", page)])


def patient_name_as_ohif_shows(name: pydicom.valuerep.PersonName) -> str:
    return f"{name.family_name}, {name.given_name}"


def canvas_image(browser: webdriver.Chrome) -> np.ndarray:
    """The viewport as the user sees it, grey levels, without its corner overlays and OHIF's banners."""
    canvas = browser.find_element(By.CSS_SELECTOR, "canvas.cornerstone-canvas")
    grey = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("L"), dtype=np.float64)
    rows, cols = grey.shape
    return grey[int(rows * 0.2) : int(rows * 0.85), int(cols * 0.1) : int(cols * 0.9)]


def shows_an_image(pixels: np.ndarray) -> bool:
    """Not blank: a good part of the viewport is lit, with structure (a black or flat viewport fails)."""
    return bool((pixels > 40).mean() > 0.15 and pixels.std() > 20)


def not_2xx(found: list[Exchange]) -> list[str]:
    """The exchanges that did not end in 2xx, readable in a failure message."""
    return [f"{e.method} {e.url} -> {e.status} {e.error or ''}" for e in found
            if not (e.status and 200 <= e.status < 300)]


def stow(settings: Settings, study: SyntheticStudy, key: str) -> None:
    """STOW-RS to the API's /dicomweb, the base URL OHIF reads from (a doctor of the study's hospital)."""
    client = DICOMwebClient(url=f"http://127.0.0.1:{settings.api_port}/dicomweb", headers={"Authorization": f"Bearer {key}"})
    client.store_instances([pydicom.dcmread(io.BytesIO(view.to_bytes())) for view in study.views])


@contextlib.asynccontextmanager
async def started(*components: Component) -> AsyncIterator[None]:
    """Start ``components`` in order; stop the started ones in reverse order, however the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        for component in components:
            await component.start()
            stack.push_async_callback(component.stop)
        yield


@contextlib.asynccontextmanager
async def in_thread(manager: contextlib.AbstractContextManager[T]) -> AsyncIterator[T]:
    """A blocking context manager (a server launcher) entered and left off the event loop."""
    value = await browse(manager.__enter__)
    try:
        yield value
    finally:
        await browse(lambda: manager.__exit__(None, None, None))


@contextlib.asynccontextmanager
async def dicomweb_with(settings: Settings, study: SyntheticStudy) -> AsyncIterator[ServiceContext]:
    """Ingest and the status API running, with ``study`` stored by STOW-RS at the API's DICOMweb root."""
    ctx = build_context(settings)
    uploader = create_api_key(ctx.engine, "carga-dicomweb", "doctor", [HOSPITAL])
    try:
        async with started(ctx.bus, IngestComponent(ctx), register_status_api(ctx)):
            await browse(lambda: stow(settings, study, uploader))
            await ctx.bus.drain()  # type: ignore[attr-defined]
            yield ctx
    finally:
        ctx.engine.dispose()


class OhifPage:
    """A headless Chromium on OHIF: what a person sees there, and the DICOMweb requests the page made."""

    def __init__(self, browser: webdriver.Chrome, network: NetworkLog, artefacts: Path, prefix: str) -> None:
        self.browser, self.network, self.artefacts, self.prefix = browser, network, artefacts, prefix

    def shot(self, name: str) -> None:
        path = self.artefacts / f"{self.prefix}-{name}.png"
        self.browser.save_screenshot(str(path))
        print(f"captura / screenshot: {path}")

    def wait(self, condition: Callable[[webdriver.Chrome], object]) -> object:
        # OHIF re-renders as data arrives, so an element found a moment ago may be gone: look again.
        return WebDriverWait(self.browser, WAIT_S, poll_frequency=0.5,
                             ignored_exceptions=[StaleElementReferenceException]).until(condition)

    def body_text(self) -> str:
        return self.browser.find_element(By.TAG_NAME, "body").text

    def settled(self) -> list[Exchange]:
        """The DICOMweb exchanges once none is still waiting for its answer."""
        self.wait(lambda b: all(e.status or e.error for e in self.network.read()))
        return self.network.read()

    def console_errors(self) -> list[str]:
        return [entry["message"] for entry in self.browser.get_log("browser") if entry["level"] == "SEVERE"]

    def dismiss(self, selector: str) -> None:
        """Close OHIF's notices (investigational use, the first-visit tour) so screenshots show the image."""
        for element in self.browser.find_elements(By.XPATH, selector):
            try:
                element.click()
            except WebDriverException:
                pass  # gone or covered meanwhile; the next look finds it again if it is still there

    def study_list(self, url: str, study: SyntheticStudy) -> list[Exchange]:
        """Open OHIF's study list: one row with what OHIF shows of our QIDO-RS answer; the exchanges it took."""
        first = study.views[0].dataset
        self.browser.get(url)
        self.wait(lambda b: any(study.accession_number in row for row in b.execute_script(STUDY_ROWS_JS)))
        [row] = self.browser.execute_script(STUDY_ROWS_JS)
        study_date = datetime.strptime(str(first.StudyDate), "%Y%m%d").strftime("%d-%b-%Y")
        assert row[0] == patient_name_as_ohif_shows(first.PatientName)
        assert row[1].startswith(study_date)
        # Modality, description, accession and number of images, as OHIF shows them.
        assert row[2:6] == ["MG", str(first.StudyDescription), study.accession_number, "4"]
        self.dismiss("//button[normalize-space()='Confirm and hide']")
        self.shot("01-lista")
        listed = self.settled()
        assert any("/dicomweb/studies?" in e.url and e.method == "GET" for e in listed)
        assert not_2xx(listed) == []
        assert self.console_errors() == []
        return listed

    def viewer(self, url: str, study: SyntheticStudy) -> list[Exchange]:
        """Open the viewer: the four series in the study browser, the first mammogram drawn; the exchanges it took."""
        first = study.views[0].dataset
        notices = "//button[normalize-space()='Confirm and hide' or normalize-space()='Skip all']"
        self.network.clear()
        self.browser.get(url)
        self.wait(lambda b: b.find_elements(By.CSS_SELECTOR, "canvas.cornerstone-canvas"))
        self.dismiss(notices)
        self.wait(lambda b: shows_an_image(canvas_image(b)))
        self.dismiss(notices)
        self.shot("02-visor")
        text = self.body_text()
        for view in ("R CC", "L CC", "R MLO", "L MLO"):
            assert view in text  # series descriptions in the study browser
        assert f"W:\n{first.WindowWidth}\nL:\n{first.WindowCenter}" in text  # the window from our metadata
        for error in ("Something went wrong", "not available", "Data Source Connection Error"):
            assert error not in text
        assert self.console_errors() == []
        viewed = self.settled()
        urls = [e.url for e in viewed if e.method == "GET"]
        assert any(url.endswith("/metadata") for url in urls)
        framed = {url.split("/instances/")[1].split("/")[0] for url in urls if url.endswith("/frames/1")}
        assert framed == {str(view.dataset.SOPInstanceUID) for view in study.views}  # image, thumbnails
        assert not_2xx(viewed) == []
        return viewed

    def lists_nothing(self, url: str, accession: str) -> list[Exchange]:
        """Open the study list where no study of ours may show; the exchanges it took."""
        self.network.clear()
        self.browser.get(url)
        self.wait(lambda b: any("/dicomweb/studies?" in e.url and (e.status or e.error) for e in self.network.read()))
        self.wait(lambda b: "No studies available" in self.body_text())
        assert accession not in self.body_text()
        self.console_errors()  # a refused request is logged there; later pages are judged on their own errors
        return self.settled()


@contextlib.asynccontextmanager
async def ohif_in_chromium(dicomweb_root: str, artefacts: Path, prefix: str) -> AsyncIterator[OhifPage]:
    """A headless Chromium that logs its requests to ``dicomweb_root``; a screenshot when the block fails."""
    browser = await browse(lambda: chromium(network_log=True))
    page = OhifPage(browser, NetworkLog(browser, dicomweb_root), artefacts, prefix)
    try:
        yield page
    except Exception:
        await browse(lambda: page.shot("falla"))
        raise
    finally:
        await browse(browser.quit)


async def test_ohif_lists_and_shows_a_study_from_our_dicomweb(
    settings: Settings, four_view_study: SyntheticStudy, tmp_path: Path
) -> None:
    dist = await browse(ohif_dist)
    [ohif_port] = free_ports()
    ohif_url = f"http://127.0.0.1:{ohif_port}"
    api_url = f"http://127.0.0.1:{settings.api_port}"
    settings = settings.model_copy(update={"cors_allow_origins": [ohif_url]})
    ohif = WebComponent(ohif_site(dist, documented_config(api_url)), "127.0.0.1", ohif_port)
    async with (
        dicomweb_with(settings, four_view_study) as ctx,
        started(ohif),
        ohif_in_chromium(f"{api_url}/dicomweb", artefacts_dir(tmp_path), "ohif") as page,
    ):
        doctor = create_api_key(ctx.engine, "radiologia", "doctor", [HOSPITAL])
        elsewhere = create_api_key(ctx.engine, "otro-hospital", "doctor", ["HGE-OTRO"])
        accession = four_view_study.accession_number

        # The study list, opened with a doctor's key; OHIF drops the token from the address bar.
        await browse(lambda: page.study_list(f"{ohif_url}/?token={doctor}", four_view_study))
        assert doctor not in await browse(lambda: page.browser.current_url)

        viewer = f"{ohif_url}/viewer?StudyInstanceUIDs={four_view_study.study_uid}&token={doctor}"
        viewed = await browse(lambda: page.viewer(viewer, four_view_study))
        assert doctor not in await browse(lambda: page.browser.current_url)
        assert any(e.method == "OPTIONS" for e in viewed)  # a real cross-origin viewer: preflights answered

        # A doctor of another hospital: the API answers, but with no study of ours.
        searched = await browse(lambda: page.lists_nothing(f"{ohif_url}/?token={elsewhere}", accession))
        assert not_2xx(searched) == []
        await browse(lambda: page.shot("03-otro-hospital"))

        # A bad token: refused by the API (401), and OHIF lists nothing.
        refused = await browse(lambda: page.lists_nothing(f"{ohif_url}/?token=no-es-una-llave", accession))
        assert any(e.status == 401 for e in refused)
        await browse(lambda: page.shot("04-token-invalido"))


async def test_ohif_uploads_a_study_to_the_same_dicomweb_root_and_opens_it(
    settings: Settings, four_view_study: SyntheticStudy, tmp_path: Path
) -> None:
    """OHIF's own "Upload" (STOW-RS to its wadoRoot, our /dicomweb) stores a study under the doctor's hospital."""
    from shared.synth import make_study

    dist = await browse(ohif_dist)
    [ohif_port] = free_ports()
    ohif_url = f"http://127.0.0.1:{ohif_port}"
    api_url = f"http://127.0.0.1:{settings.api_port}"
    settings = settings.model_copy(update={"cors_allow_origins": [ohif_url]})
    ohif = WebComponent(ohif_site(dist, documented_config(api_url)), "127.0.0.1", ohif_port)
    uploaded = make_study(seed=16_030, hospital_id=HOSPITAL)
    files = uploaded.save(tmp_path / "para-subir")
    async with (
        dicomweb_with(settings, four_view_study) as ctx,
        started(ohif),
        ohif_in_chromium(f"{api_url}/dicomweb", artefacts_dir(tmp_path), "ohif-upload") as page,
    ):
        doctor = create_api_key(ctx.engine, "radiologia-carga", "doctor", [HOSPITAL])
        await browse(lambda: page.study_list(f"{ohif_url}/?token={doctor}", four_view_study))
        await browse(lambda: page.browser.find_element(By.XPATH, "//button[normalize-space()='Upload']").click())
        chooser = "//button[normalize-space()='Add files']//input[@type='file']"
        await browse(lambda: page.wait(lambda b: b.find_elements(By.XPATH, chooser)))
        await browse(lambda: page.browser.find_element(By.XPATH, chooser).send_keys("\n".join(str(f) for f in files)))

        def stored() -> bool:
            return len(ctx.store.list_keys(ctx.settings.bucket_dicom, f"{HOSPITAL}/{uploaded.study_uid}/")) == 4

        await browse(lambda: page.wait(lambda b: stored()))
        await browse(lambda: page.shot("01-subido"))
        # The last instance is stored before the STOW-RS answer leaves the server: wait for the answer too.
        stows = [e for e in await browse(page.settled) if e.method == "POST"]
        assert stows and all(e.url.startswith(f"{api_url}/dicomweb/studies") and e.status == 200 for e in stows)
        await ctx.bus.drain()  # type: ignore[attr-defined]
        await browse(lambda: page.study_list(f"{ohif_url}/?token={doctor}&accession={uploaded.accession_number}", uploaded))


def sign_in_service() -> Starlette:
    """The hospital's sign-in as nginx's ``auth_request`` asks it: 204 for a signed-in browser, else 401."""

    async def check(request: Request) -> Response:
        return Response(status_code=204 if request.cookies.get(SSO_COOKIE) == SSO_SESSION else 401)

    return Starlette(routes=[Route("/check", check)])


def documented_proxy(port: int, dist: Path, app_config: Path, key: str, api_url: str, sign_in_url: str) -> str:
    """The same-origin nginx ``server`` block of docs/dicomweb.md, with this test's addresses.

    nginx reaches the API from ``PROXY_ADDRESS`` (``proxy_bind``) and the browser from 127.0.0.1, so the
    audit log shows which one the API believed.
    """
    [block] = [block for block in documented_blocks("nginx") if "location /dicomweb/" in block]
    replacements = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port};",
        "/srv/ohif/dist": str(dist.resolve()),
        "/srv/ohif/app-config.js": str(app_config),
        "Bearer mdd_...": f"Bearer {key}",
        "proxy_pass http://mdd.hospital.example.mx:8000;": f"proxy_pass {api_url}; proxy_bind {PROXY_ADDRESS};",
        "http://sso.hospital.example.mx/check": f"{sign_in_url}/check",
    }
    for documented, actual in replacements.items():
        assert block.count(documented) == 1, f"docs/dicomweb.md: {documented!r}"
        block = block.replace(documented, actual)
    return block


async def test_ohif_behind_the_documented_proxy_needs_a_hospital_session_and_never_sees_the_key(
    settings: Settings, four_view_study: SyntheticStudy, tmp_path: Path
) -> None:
    dist = await browse(ohif_dist)
    proxy_port, sign_in_port = free_ports(2)
    viewer_url = f"http://127.0.0.1:{proxy_port}"
    api_url = f"http://127.0.0.1:{settings.api_port}"
    settings = settings.model_copy(update={"api_forwarded_allow_ips": [PROXY_ADDRESS]})
    app_config = tmp_path / "app-config.js"
    app_config.write_text(documented_config(viewer_url), encoding="utf-8")
    async with dicomweb_with(settings, four_view_study) as ctx:
        viewer_key = create_api_key(ctx.engine, "visor-proxy", "doctor", [HOSPITAL])
        admin = {"Authorization": f"Bearer {create_api_key(ctx.engine, 'auditoria', 'admin', [])}"}
        server_block = documented_proxy(proxy_port, dist, app_config, viewer_key, api_url, f"http://127.0.0.1:{sign_in_port}")
        async with (
            started(WebComponent(sign_in_service(), "127.0.0.1", sign_in_port)),
            in_thread(nginx_server(server_block, proxy_port)),
            ohif_in_chromium(f"{viewer_url}/dicomweb", artefacts_dir(tmp_path), "ohif-proxy") as page,
        ):
            # No hospital session: the proxy refuses DICOMweb (401) and OHIF lists nothing.
            refused = await browse(lambda: page.lists_nothing(f"{viewer_url}/", four_view_study.accession_number))
            assert refused and {e.status for e in refused} == {401}
            await browse(lambda: page.shot("00-sin-sesion"))

            # Signed in (the hospital's session cookie): the study list and the viewer, on one origin.
            await browse(lambda: page.browser.add_cookie({"name": SSO_COOKIE, "value": SSO_SESSION}))
            page.network.clear()
            listed = await browse(lambda: page.study_list(f"{viewer_url}/", four_view_study))
            viewed = await browse(lambda: page.viewer(
                f"{viewer_url}/viewer?StudyInstanceUIDs={four_view_study.study_uid}", four_view_study))
            exchanges = listed + viewed
            assert not any(e.method == "OPTIONS" for e in exchanges)  # one origin: no CORS preflights
            # The key stays in the proxy: the page never sends a token, and no address carries one.
            assert [e.headers for e in exchanges if "authorization" in {h.lower() for h in e.headers}] == []
            assert not any(viewer_key in e.url for e in exchanges)

            async with httpx.AsyncClient(timeout=30) as http:
                # QIDO-RS links point at the viewer's public address (the proxy's Host), not at the API's.
                found = (await http.get(f"{viewer_url}/dicomweb/studies", cookies={SSO_COOKIE: SSO_SESSION})).json()
                [retrieve_url] = found[0]["00081190"]["Value"]
                assert retrieve_url == f"{viewer_url}/dicomweb/studies/{four_view_study.study_uid}"

                # The audit log names the browser (X-Forwarded-For from the trusted proxy), not the proxy.
                audit = (await http.get(f"{api_url}/audit", params={"who": "apikey:visor-proxy"}, headers=admin)).json()
                assert {e["action"] for e in audit} == {"dicomweb"} and {e["client"] for e in audit} == {"127.0.0.1"}
                # Anyone else claiming another address in X-Forwarded-For is recorded at their own address.
                spoofed = {"Authorization": f"Bearer {viewer_key}", "X-Forwarded-For": "203.0.113.9"}
                assert (await http.get(f"{api_url}/dicomweb/studies", headers=spoofed)).status_code == 200
                again = (await http.get(f"{api_url}/audit", params={"who": "apikey:visor-proxy"}, headers=admin)).json()
                assert len(again) == len(audit) + 1 and {e["client"] for e in again} == {"127.0.0.1"}
