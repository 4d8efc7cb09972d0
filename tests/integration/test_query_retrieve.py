"""The Query/Retrieve SCP as reading workstations and PACS use it: dcmtk findscu, movescu and getscu, and
Orthanc querying and retrieving from us; a study and our results for it, and only the caller's hospital."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import ComprehensiveSRStorage, MammographyCADSRStorage, SecondaryCaptureImageStorage

from infra.servers import dcmtk_tool
from shared.runtime import ServiceContext
from shared.settings import DicomDestination, Sender, Settings
from shared.synth import SyntheticStudy, make_study
from services.notify.pacs_results import PacsResults
from tests.conftest import free_port
from tests.e2e.harness import storescu
from tests.integration.conftest import ingest_running
from tests.integration.test_pacs_results import orthanc_study, remove_from_orthanc
from tests.unit.test_pacs_results import inferred

HOSPITAL, OTHER_HOSPITAL = "HGE-ENSENADA", "HG-TIJUANA"
LOOPBACK = ["127.0.0.1"]  # every peer of these tests runs on this machine
RESULT_CLASSES = {MammographyCADSRStorage, ComprehensiveSRStorage, SecondaryCaptureImageStorage}


@contextmanager
def storescp(port: int, folder: Path, ae_title: str = "VISOR") -> Iterator[Path]:
    """dcmtk's storescp: a reading workstation that receives what we C-MOVE to it."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([dcmtk_tool("storescp"), "-aet", ae_title, "-od", str(folder), str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([dcmtk_tool("echoscu"), "-aec", ae_title, "127.0.0.1", str(port)], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and process.poll() is None, "storescp did not start"
            time.sleep(0.1)
        yield folder
    finally:
        process.kill()
        process.wait()


def findscu(port: int, calling_ae: str, keys: list[str], out: Path, root: str = "-S") -> list:
    """dcmtk findscu; the responses it extracted, read back."""
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [dcmtk_tool("findscu"), root, "-aet", calling_ae, "-aec", "MDD", "-X", "-od", str(out),
         *[arg for key in keys for arg in ("-k", key)], "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


@pytest.fixture
def stored(tmp_path: Path) -> SyntheticStudy:
    study = make_study(seed=16_003, finding="mass", finding_laterality="L", hospital_id=HOSPITAL)
    study.save(tmp_path / "study")
    return study


def qr_settings(settings: Settings, **update: object) -> Settings:
    senders = {"MAMO_SALA1": Sender(hospital_id=HOSPITAL, addresses=LOOPBACK), "VISOR": Sender(hospital_id=HOSPITAL, addresses=LOOPBACK), "VISOR_TIJ": Sender(hospital_id=OTHER_HOSPITAL, addresses=LOOPBACK)}
    return settings.model_copy(update={"senders": senders, "accept_unknown_senders": False, **update})


async def store_with_results(ctx: ServiceContext, study: SyntheticStudy, folder: Path) -> None:
    output = await asyncio.to_thread(storescu, folder, ctx.settings.dicom_port)
    assert output.count("Received Store Response (Success)") == 4
    await ctx.bus.drain()  # indexed
    await asyncio.to_thread(PacsResults(ctx).build, inferred(study), ["cad", "sr", "sc"])  # what notify keeps


async def test_findscu_finds_the_study_its_series_and_images_only_for_its_hospital(settings: Settings, stored: SyntheticStudy, tmp_path: Path) -> None:
    async with ingest_running(qr_settings(settings)) as ctx:
        await store_with_results(ctx, stored, tmp_path / "study")
        port = ctx.settings.dicom_port
        [study] = await asyncio.to_thread(
            findscu, port, "VISOR", ["QueryRetrieveLevel=STUDY", f"PatientID={stored.patient_id}", "StudyInstanceUID", "PatientName",
                                     "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "AccessionNumber", "StudyDate"], tmp_path / "f1")
        assert study.StudyInstanceUID == stored.study_uid and study.AccessionNumber == stored.accession_number
        assert "PRUEBA" in str(study.PatientName) and "MG" in list(study.ModalitiesInStudy)
        assert int(study.NumberOfStudyRelatedInstances) == 7  # four views and our three results
        # Wildcards and date ranges, on the patient root too.
        [patient] = await asyncio.to_thread(
            findscu, port, "VISOR", ["QueryRetrieveLevel=PATIENT", "PatientName=prueba*", f"PatientID={stored.patient_id}",
                                     "NumberOfPatientRelatedStudies"], tmp_path / "f2", "-P")
        assert int(patient.NumberOfPatientRelatedStudies) == 1
        assert await asyncio.to_thread(findscu, port, "VISOR", ["QueryRetrieveLevel=STUDY", "StudyDate=19000101-19001231", "StudyInstanceUID"], tmp_path / "f3") == []
        series = await asyncio.to_thread(
            findscu, port, "VISOR", ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={stored.study_uid}", "SeriesInstanceUID", "Modality"], tmp_path / "f4")
        assert sorted(s.Modality for s in series) == ["MG", "MG", "MG", "MG", "OT", "SR", "SR"]
        images = await asyncio.to_thread(
            findscu, port, "VISOR", ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={stored.study_uid}",
                                     f"SeriesInstanceUID={series[0].SeriesInstanceUID}", "SOPInstanceUID", "SOPClassUID"], tmp_path / "f5")
        assert len(images) == 1 and images[0].SOPInstanceUID
        # Another hospital's workstation sees nothing of it.
        assert await asyncio.to_thread(findscu, port, "VISOR_TIJ", ["QueryRetrieveLevel=STUDY", f"PatientID={stored.patient_id}", "StudyInstanceUID"], tmp_path / "f6") == []


async def test_movescu_and_getscu_retrieve_the_study_with_our_results(settings: Settings, stored: SyntheticStudy, tmp_path: Path) -> None:
    viewer_port = free_port()
    destinations = {"VISOR": DicomDestination(host="127.0.0.1", port=viewer_port, ae_title="VISOR")}
    async with ingest_running(qr_settings(settings, dicom_destinations=destinations)) as ctx:
        await store_with_results(ctx, stored, tmp_path / "study")
        port = ctx.settings.dicom_port
        with storescp(viewer_port, tmp_path / "moved") as moved:
            result = await asyncio.to_thread(subprocess.run, [
                dcmtk_tool("movescu"), "-S", "-aet", "VISOR", "-aec", "MDD", "-aem", "VISOR",
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={stored.study_uid}", "127.0.0.1", str(port),
            ], capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stdout + result.stderr
            classes = sorted(str(dcmread(p, stop_before_pixels=True).SOPClassUID) for p in moved.iterdir())
        assert len(classes) == 7 and RESULT_CLASSES <= set(classes)
        # Unknown move destination: refused with 0xA801.
        unknown = await asyncio.to_thread(subprocess.run, [
            dcmtk_tool("movescu"), "-S", "-aet", "VISOR", "-aec", "MDD", "-aem", "NADIE",
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={stored.study_uid}", "127.0.0.1", str(port),
        ], capture_output=True, text=True, timeout=60)
        assert unknown.returncode != 0 and "MoveDestinationUnknown" in unknown.stdout + unknown.stderr

        got = tmp_path / "got"
        got.mkdir()
        result = await asyncio.to_thread(subprocess.run, [
            dcmtk_tool("getscu"), "-S", "-aet", "VISOR", "-aec", "MDD", "-od", str(got),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={stored.study_uid}", "127.0.0.1", str(port),
        ], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        received = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in got.iterdir()}
        assert {str(v.dataset.SOPInstanceUID) for v in stored.views} < received and len(received) == 7
        # The other hospital's workstation retrieves nothing.
        other = tmp_path / "other"
        other.mkdir()
        await asyncio.to_thread(subprocess.run, [
            dcmtk_tool("getscu"), "-S", "-aet", "VISOR_TIJ", "-aec", "MDD", "-od", str(other),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={stored.study_uid}", "127.0.0.1", str(port),
        ], capture_output=True, text=True, timeout=60)
        assert list(other.iterdir()) == []


async def test_orthanc_queries_and_retrieves_a_study_from_us(orthanc, settings: Settings, stored: SyntheticStudy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ours = DicomDestination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    configured = qr_settings(settings, dicom_destinations={orthanc.ae_title: ours})
    configured.senders[orthanc.ae_title] = Sender(hospital_id=HOSPITAL, addresses=LOOPBACK)
    async with ingest_running(configured) as ctx:
        await store_with_results(ctx, stored, tmp_path / "study")
        api = orthanc.http_url
        httpx.put(f"{api}/modalities/MDD", json={"AET": "MDD", "Host": "127.0.0.1", "Port": ctx.settings.dicom_port}).raise_for_status()
        try:
            query = (await asyncio.to_thread(httpx.post, f"{api}/modalities/MDD/query",
                                             json={"Level": "Study", "Query": {"StudyInstanceUID": stored.study_uid, "PatientID": ""}}, timeout=60)).json()
            answers = httpx.get(f"{api}/queries/{query['ID']}/answers?expand").json()
            assert len(answers) == 1 and answers[0]["0010,0020"]["Value"] == stored.patient_id
            retrieve = await asyncio.to_thread(httpx.post, f"{api}/queries/{query['ID']}/retrieve",
                                               json={"TargetAet": orthanc.ae_title, "Synchronous": True}, timeout=120)
            assert retrieve.status_code == 200, retrieve.text
            in_orthanc = await asyncio.to_thread(orthanc_study, api, stored.study_uid)
            assert len(in_orthanc) == 7 and RESULT_CLASSES <= {t["SOPClassUID"] for t in in_orthanc.values()}
        finally:
            httpx.delete(f"{api}/modalities/MDD")
            remove_from_orthanc(api, stored.study_uid)
