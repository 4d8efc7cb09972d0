"""OHIF reads our DICOMweb: the prebuilt OHIF 3.13 viewer (npm ``@ohif/app``) in a real headless Chromium.

A four-view study goes in through the ingest's STOW-RS; the status API serves DICOMweb on one origin and
OHIF is served on another with the ``app-config.js`` of docs/dicomweb.md (the API allows OHIF's origin,
MDD_CORS_ALLOW_ORIGINS). A doctor sees the study in OHIF's study list and the mammogram in its viewer,
and the API answers every DICOMweb request OHIF makes with 2xx; a doctor of another hospital, or a bad
token, sees no study.

Screenshots go to ``$MDD_TEST_ARTIFACTS`` (default: the test's tmp folder); their paths are printed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

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

from infra.servers import free_ports, ohif_dist
from services.ingest.__main__ import IngestComponent
from services.status_api.__main__ import register as register_status_api
from services.status_api.security import create_api_key
from shared.runtime import WebComponent, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy
from tests.e2e.browser import Exchange, NetworkLog, artefacts_dir, browse, chromium

pytestmark = pytest.mark.e2e
DOCS = Path(__file__).resolve().parents[2] / "docs" / "dicomweb.md"
DOCUMENTED_API = "https://mdd.hospital.example.mx"
HOSPITAL = "HOSP-DEMO"  # the ingest's default hospital for STOW-RS
WAIT_S = 120  # OHIF's bundles are large and Chromium renders without a GPU
STUDY_ROWS_JS = """return [...document.querySelectorAll('tbody tr:not([data-filter-row])')]
  .map((row) => [...row.querySelectorAll('td')].map((cell) => cell.innerText.trim()));"""


def documented_config(api_root: str) -> str:
    """The ``app-config.js`` of docs/dicomweb.md, pointed at ``api_root``."""
    [config] = re.findall(r"```js\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)
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


def stow(settings: Settings, study: SyntheticStudy) -> None:
    client = DICOMwebClient(url=f"http://127.0.0.1:{settings.ingest_http_port}/dicomweb")
    client.store_instances([pydicom.dcmread(io.BytesIO(view.to_bytes())) for view in study.views])


async def test_ohif_lists_and_shows_a_study_from_our_dicomweb(
    settings: Settings, four_view_study: SyntheticStudy, tmp_path: Path
) -> None:
    artefacts = artefacts_dir(tmp_path)
    dist = await browse(ohif_dist)
    [ohif_port] = free_ports()
    ohif_url = f"http://127.0.0.1:{ohif_port}"
    api_url = f"http://127.0.0.1:{settings.api_port}"
    settings = settings.model_copy(update={"cors_allow_origins": [ohif_url]})
    ctx = build_context(settings)
    ingest, api = IngestComponent(ctx), register_status_api(ctx)
    ohif = WebComponent(ohif_site(dist, documented_config(api_url)), "127.0.0.1", ohif_port)
    doctor = create_api_key(ctx.engine, "radiologia", "doctor", [HOSPITAL])
    elsewhere = create_api_key(ctx.engine, "otro-hospital", "doctor", ["HGE-OTRO"])
    await ctx.bus.start()
    await ingest.start()
    await api.start()
    await ohif.start()
    browser = await browse(lambda: chromium(network_log=True))
    network = NetworkLog(browser, f"{api_url}/dicomweb")

    def shot(name: str) -> None:
        path = artefacts / f"ohif-{name}.png"
        browser.save_screenshot(str(path))
        print(f"captura / screenshot: {path}")

    def wait(condition: Callable[[webdriver.Chrome], object]) -> object:
        # OHIF re-renders as data arrives, so an element found a moment ago may be gone: look again.
        return WebDriverWait(browser, WAIT_S, poll_frequency=0.5,
                             ignored_exceptions=[StaleElementReferenceException]).until(condition)

    def body_text() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    def settled() -> list[Exchange]:
        """The DICOMweb exchanges once none is still waiting for its answer."""
        wait(lambda b: all(e.status or e.error for e in network.read()))
        return network.read()

    def console_errors() -> list[str]:
        return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]

    def dismiss(selector: str) -> None:
        """Close OHIF's notices (investigational use, the first-visit tour) so screenshots show the image."""
        for element in browser.find_elements(By.XPATH, selector):
            try:
                element.click()
            except WebDriverException:
                pass  # gone or covered meanwhile; the next look finds it again if it is still there

    try:
        await browse(lambda: stow(settings, four_view_study))
        await ctx.bus.drain()  # type: ignore[attr-defined]
        first = four_view_study.views[0].dataset
        accession = four_view_study.accession_number

        # The study list, opened with a doctor's key: one row with what OHIF shows of our QIDO-RS answer.
        await browse(lambda: browser.get(f"{ohif_url}/?token={doctor}"))
        await browse(lambda: wait(lambda b: any(accession in row for row in b.execute_script(STUDY_ROWS_JS))))
        [row] = await browse(lambda: browser.execute_script(STUDY_ROWS_JS))
        study_date = datetime.strptime(str(first.StudyDate), "%Y%m%d").strftime("%d-%b-%Y")
        assert row[0] == patient_name_as_ohif_shows(first.PatientName)
        assert row[1].startswith(study_date)
        # Modality, description, accession and number of images, as OHIF shows them.
        assert row[2:6] == ["MG", str(first.StudyDescription), accession, "4"]
        assert doctor not in await browse(lambda: browser.current_url)  # OHIF drops the token from the URL
        await browse(lambda: dismiss("//button[normalize-space()='Confirm and hide']"))
        await browse(lambda: shot("01-lista"))
        listed = await browse(settled)
        assert any("/dicomweb/studies?" in e.url and e.method == "GET" for e in listed)
        assert not_2xx(listed) == []
        assert await browse(console_errors) == []

        # The viewer: the four series in the study browser, the first mammogram drawn in the viewport.
        network.clear()
        viewer = f"{ohif_url}/viewer?StudyInstanceUIDs={four_view_study.study_uid}&token={doctor}"
        notices = "//button[normalize-space()='Confirm and hide' or normalize-space()='Skip all']"
        await browse(lambda: browser.get(viewer))
        await browse(lambda: wait(lambda b: b.find_elements(By.CSS_SELECTOR, "canvas.cornerstone-canvas")))
        await browse(lambda: dismiss(notices))
        await browse(lambda: wait(lambda b: shows_an_image(canvas_image(b))))
        await browse(lambda: dismiss(notices))
        await browse(lambda: shot("02-visor"))
        text = await browse(body_text)
        for view in ("R CC", "L CC", "R MLO", "L MLO"):
            assert view in text  # series descriptions in the study browser
        assert f"W:\n{first.WindowWidth}\nL:\n{first.WindowCenter}" in text  # the window from our metadata
        for error in ("Something went wrong", "not available", "Data Source Connection Error"):
            assert error not in text
        assert await browse(console_errors) == []
        assert doctor not in await browse(lambda: browser.current_url)
        viewed = await browse(settled)
        urls = [e.url for e in viewed if e.method == "GET"]
        assert any(url.endswith("/metadata") for url in urls)
        framed = {url.split("/instances/")[1].split("/")[0] for url in urls if url.endswith("/frames/1")}
        assert framed == {str(view.dataset.SOPInstanceUID) for view in four_view_study.views}  # image, thumbnails
        assert any(e.method == "OPTIONS" for e in viewed)  # a real cross-origin viewer: preflights answered
        assert not_2xx(viewed) == []

        # A doctor of another hospital: the API answers, but with no study of ours.
        network.clear()
        await browse(lambda: browser.get(f"{ohif_url}/?token={elsewhere}"))
        await browse(lambda: wait(lambda b: any("/dicomweb/studies?" in e.url for e in network.read())))
        searched = await browse(settled)
        assert not_2xx(searched) == []
        await browse(lambda: wait(lambda b: "No studies available" in body_text()))
        assert accession not in await browse(body_text)
        await browse(lambda: shot("03-otro-hospital"))

        # A bad token: refused by the API (401), and OHIF lists nothing.
        network.clear()
        await browse(lambda: browser.get(f"{ohif_url}/?token=no-es-una-llave"))
        await browse(lambda: wait(lambda b: any(e.status == 401 for e in network.read())))
        await browse(lambda: wait(lambda b: "No studies available" in body_text()))
        assert accession not in await browse(body_text)
        await browse(lambda: shot("04-token-invalido"))
    except Exception:
        await browse(lambda: shot("falla"))
        raise
    finally:
        await browse(browser.quit)
        await ohif.stop()
        await api.stop()
        await ingest.stop()
        await ctx.bus.stop()
        ctx.engine.dispose()
