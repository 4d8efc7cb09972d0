"""The traffic-light board in a real headless Chromium: sign in with user and password, see the lights and how
long each study has waited against its hospital's deadline, watch a RED light arrive live and be announced,
open the study page (disclaimer, the mosaic with the model's marks, magma image, report form) and report the study.

Screenshots go to ``$MDD_TEST_ARTIFACTS`` (default: the test's tmp folder); their paths are printed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image
from pydantic import SecretStr
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlmodel import Session

from services.status_api.__main__ import register
from services.status_api.auth_tables import UserRow
from services.status_api.security import create_user
from tests.e2e.browser import artefacts_dir, browse, chromium
from shared.bus import MemoryBus
from shared.db import make_engine
from shared.events import (
    BreastResult,
    DerivedView,
    Event,
    InstanceStored,
    StudyInferred,
    StudyPreprocessed,
    producer,
)
from shared.runtime import ServiceContext
from shared.settings import Settings
from shared.store import LocalStore

pytestmark = pytest.mark.e2e
ADMIN_KEY = "board-admin-key-0123456789"
WAIT_S = 20
ROWS_JS = """return [...document.querySelectorAll('#studies tbody tr')].map((r) =>
  [r.dataset.studyUid, r.querySelector('.triage-light').innerText, r.querySelector('.status-light').innerText]);"""


def envelope(uid: str, hospital: str) -> dict:
    return dict(study_uid=uid, hospital_id=hospital, correlation_id=f"c-{uid}", producer=producer("test"),
                accession_number=f"ACC-{uid[-1]}")


def stored(uid: str, hospital: str) -> InstanceStored:
    return InstanceStored(
        **envelope(uid, hospital), sop_instance_uid=f"{uid}.1", series_instance_uid=f"{uid}.0",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG",
        object_key="k", size_bytes=1, sha256="x", patient_key="p",
    )


def inferred(uid: str, hospital: str, light: str, score: float) -> StudyInferred:
    return StudyInferred(
        **envelope(uid, hospital), breasts=[BreastResult(laterality="L", malignancy_score=score, birads=4 if light == "RED" else 1,
                                                         density="B", views_used=["L-CC", "L-MLO"])],
        triage_light=light, triage_reason=f"puntaje {score}", model_name="mdd-demo", model_version="0.1",
        model_trained=True, model_trained_on="synthetic-phantoms", disclaimer="Entrenado con fantomas sintéticos",
    )


def mosaic_dicom() -> bytes:
    """A results mosaic as the notify service keeps it (a real one, of a synthetic study, with one mark)."""
    from shared.synth import make_study
    from services.notify.mosaic import view_slot, view_tile
    from services.notify.pacs_results import StudySources, build_sc
    from tests.unit.test_cad_sr import with_region
    from tests.unit.test_pacs_results import headers

    study = make_study(seed=91, finding="mass", finding_laterality="L")
    event, _ = with_region(study)
    sources = StudySources(headers=headers(study))
    for header, view in zip(sources.headers, study.views):
        slot = view_slot(header)
        tile = view_tile(header, view.to_bytes(), slot)
        sources.views[slot], sources.tiles[slot], sources.tile_sources[slot] = tile.image, tile, str(header.SOPInstanceUID)
    buffer = io.BytesIO()
    build_sc(event, sources).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def magma_png() -> bytes:
    gradient = np.linspace(0, 1, 64 * 48).reshape(64, 48)
    rgba = (colormaps["magma"](gradient) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_board_shows_lights_live_and_takes_a_report(settings: Settings, tmp_path: Path) -> None:
    artefacts = artefacts_dir(tmp_path)
    settings.bootstrap_api_key = SecretStr(ADMIN_KEY)
    settings.viewer_url_template = "http://visor.example/viewer?StudyInstanceUIDs={study_uid}"
    settings.hospital_result_deadlines = {"HOSP-A": 45}
    settings.auth_cache_seconds = 1  # live streams look their token up again every second
    engine = make_engine(settings.resolved_database_url)
    store = LocalStore(settings.resolved_store_dir)
    ctx = ServiceContext(settings, MemoryBus(settings), store, engine)
    component = register(ctx)
    create_user(engine, "tecnica.ensenada", "contraseña-segura-1", "doctor", ["HOSP-A"])
    await ctx.bus.start()
    await component.start()
    browser = await browse(chromium)
    shots: list[Path] = []

    async def publish(*events: Event) -> None:
        for event in events:
            await ctx.bus.publish(event)
        await ctx.bus.drain()

    def shot(name: str) -> None:
        path = artefacts / f"{name}.png"
        browser.save_screenshot(str(path))
        shots.append(path)
        print(f"captura / screenshot: {path}")

    def wait(condition: Callable[[webdriver.Chrome], object]) -> object:
        # Live updates re-render rows, so an element found a moment ago may be gone: look again.
        return WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(condition)

    try:
        suspicious, calm = "1.2.826.0.1.7", "1.2.826.0.1.8"
        store.put_bytes(settings.bucket_derived, f"{suspicious}/L-CC/magma.png", magma_png(), "image/png")
        store.put_bytes(settings.bucket_results, f"HOSP-A/{suspicious}/overlay.dcm", await browse(mosaic_dicom), "application/dicom")
        view = DerivedView(sop_instance_uid=f"{suspicious}.1", laterality="L", view_position="CC",
                           mask_key=f"{suspicious}/L-CC/mask.png", crop_key=f"{suspicious}/L-CC/crop.png",
                           magma_key=f"{suspicious}/L-CC/magma.png", input_key="x", breast_area_fraction=0.4)
        await publish(stored(suspicious, "HOSP-A"), stored(calm, "HOSP-A"),
                      StudyPreprocessed(**envelope(suspicious, "HOSP-A"), segmentation_backend="otsu", views=[view]),
                      inferred(calm, "HOSP-A", "GREEN", 0.05))

        # Staff sign in with user and password (a wrong password is refused, with a reason).
        url = f"http://127.0.0.1:{settings.api_port}"
        await browse(lambda: browser.get(url + "/"))

        def sign_in(password: str) -> None:
            for field, value in (("username", "tecnica.ensenada"), ("password", password)):
                browser.find_element(By.ID, field).clear()
                browser.find_element(By.ID, field).send_keys(value)
            browser.find_element(By.CSS_SELECTOR, "#password-login button").click()

        await browse(lambda: sign_in("equivocada"))
        await browse(lambda: wait(lambda b: "incorrectos" in b.find_element(By.ID, "error").text))
        await browse(lambda: sign_in("contraseña-segura-1"))
        await browse(lambda: wait(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#studies tbody tr")) == 2))
        assert "tecnica.ensenada (doctor)" in await browse(lambda: browser.find_element(By.ID, "who").text)
        await browse(lambda: wait(lambda b: b.find_element(By.ID, "live").text.startswith("En vivo")))
        rows = await browse(lambda: browser.execute_script(ROWS_JS))  # one read: live updates re-render rows
        assert rows[0] == [calm, "Verde / green", "Verde / green"]  # triaged GREEN comes before not-yet-triaged
        assert rows[1][0] == suspicious and rows[1][1] == "Sin triaje / not triaged"
        labels = await browse(lambda: [e.get_attribute("aria-label") for e in browser.find_elements(By.CSS_SELECTOR, "[role=img]")])
        assert "Semáforo de triaje / triage light: Verde / green" in labels
        # How long each has waited since acquisition, against the hospital's 45-minute deadline.
        waits = await browse(lambda: {r.get_attribute("data-study-uid"): r.find_element(By.CSS_SELECTOR, ".waiting").text
                                      for r in browser.find_elements(By.CSS_SELECTOR, "#studies tbody tr")})
        assert waits[suspicious].endswith("/ 45 min") and waits[suspicious].startswith("0 min")
        assert waits[calm].startswith("resultado en / results in")
        await browse(lambda: shot("01-tablero"))

        # A RED result arrives through the bus: it shows up first, without reloading the page.
        await browse(lambda: browser.execute_script("window.sinRecargar = true;"))
        await publish(inferred(suspicious, "HOSP-A", "RED", 0.93))
        first = f'#studies tbody tr:first-child[data-study-uid="{suspicious}"][data-triage="RED"]'
        await browse(lambda: wait(lambda b: b.find_elements(By.CSS_SELECTOR, first)))
        assert await browse(lambda: browser.execute_script("return window.sinRecargar === true;"))
        assert (await browse(lambda: browser.execute_script(ROWS_JS)))[0] == [suspicious, "Rojo / red", "Verde / green"]
        # ... and is announced: a banner that names it, without a reload.
        await browse(lambda: wait(lambda b: b.find_element(By.ID, "red-alert").is_displayed()))
        banner = await browse(lambda: browser.find_element(By.ID, "red-alert-text").text)
        assert "Nuevo estudio ROJO" in banner and "ACC-7" in banner and "HOSP-A" in banner
        await browse(lambda: shot("02-rojo-en-vivo"))
        await browse(lambda: browser.find_element(By.ID, "red-alert-close").click())

        # Filters: only GREEN leaves the calm study.
        await browse(lambda: Select(browser.find_element(By.NAME, "triage_light")).select_by_value("GREEN"))
        await browse(lambda: wait(lambda b: [r.get_attribute("data-study-uid") for r in b.find_elements(By.CSS_SELECTOR, "#studies tbody tr")] == [calm]))
        await browse(lambda: Select(browser.find_element(By.NAME, "triage_light")).select_by_value(""))
        await browse(lambda: wait(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#studies tbody tr")) == 2))

        # The study page: disclaimer, AI outputs, magma image, viewer link and the report form.
        await browse(lambda: browser.find_element(By.CSS_SELECTOR, f'tr[data-study-uid="{suspicious}"] a').click())
        await browse(lambda: wait(lambda b: b.find_element(By.ID, "study-state").text != ""))
        disclaimer = await browse(lambda: browser.find_element(By.ID, "disclaimer").text)
        assert "Modelo de demostración entrenado con datos sintéticos; no validado clínicamente" in disclaimer
        assert await browse(lambda: browser.find_element(By.ID, "triage-light").text) == "Rojo / red"
        assert "0.930" in await browse(lambda: browser.find_element(By.ID, "breasts").text)
        await browse(lambda: wait(lambda b: b.execute_script(
            "const i = document.querySelector('#views img'); return i && i.complete && i.naturalWidth === 48;")))
        assert len(await browse(lambda: browser.find_elements(By.CSS_SELECTOR, "#views img"))) == 1  # no broken crop
        # The four views with the model's marks: the mosaic that went to the PACS.
        await browse(lambda: wait(lambda b: b.execute_script(
            "const i = document.getElementById('mosaic-image'); return i && i.complete && i.naturalWidth === 640;")))
        await browse(lambda: browser.execute_script("document.getElementById('mosaic').scrollIntoView();"))
        await browse(lambda: shot("03-mosaico-con-marcas"))
        await browse(lambda: browser.execute_script("window.scrollTo(0, 0);"))
        viewer = await browse(lambda: browser.find_element(By.ID, "viewer").get_attribute("href"))
        assert viewer == f"http://visor.example/viewer?StudyInstanceUIDs={suspicious}"
        await browse(lambda: shot("03-estudio"))

        await browse(lambda: Select(browser.find_element(By.NAME, "birads")).select_by_value("4"))
        await browse(lambda: browser.find_element(By.NAME, "text").send_keys("Masa espiculada en CC izquierda"))
        await browse(lambda: browser.find_element(By.CSS_SELECTOR, "#report button").click())
        await browse(lambda: wait(lambda b: "Reportado" in b.find_element(By.ID, "study-state").text))
        assert "Reporte enviado" in await browse(lambda: browser.find_element(By.ID, "report-result").text)
        assert "study.reported" in await browse(lambda: browser.find_element(By.ID, "timeline").text)
        await browse(lambda: shot("04-reportado"))

        # The account is deactivated: the page's live stream is closed by the server and sign-in is asked again.
        with Session(engine) as session:
            user = session.get(UserRow, "tecnica.ensenada")
            assert user is not None
            user.active = False
            session.add(user)
            session.commit()
        await browse(lambda: wait(lambda b: b.find_element(By.ID, "login").is_displayed()))
        assert "desactivado" in await browse(lambda: browser.find_element(By.ID, "error").text)
        await browse(lambda: shot("05-cuenta-desactivada"))
        assert all(path.stat().st_size > 0 for path in shots)
    except Exception:
        await browse(lambda: shot("falla"))
        raise
    finally:
        await browse(browser.quit)
        await component.stop()
        await ctx.bus.stop()
        engine.dispose()
