"""DICOMweb for viewers, as a viewer uses it: studies sent by STOW-RS to the real ingest are found by
QIDO-RS and opened by WADO-RS (dicomweb-client) on the status API served by uvicorn, from the
local store and from MinIO, behind the status API's bearer tokens and hospital scope.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.datadict import tag_for_keyword
from pydicom.encaps import get_frame
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless
from requests import HTTPError

from shared.events import parse_event
from shared.runtime import ServiceContext, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy, make_study
from services.ingest.__main__ import IngestComponent
from services.ingest.stow import boundary_of, split_parts
from services.status_api.__main__ import register as register_status_api
from services.status_api.security import create_api_key
from tests.integration.conftest import door_headers

HOSPITAL = "HOSP-DEMO"  # the ingest's default hospital for STOW-RS
NATIVE_FRAME = ("application/octet-stream",)


@dataclass
class Running:
    """The ingest and the status API in one process, and bearer keys per kind of caller."""

    ctx: ServiceContext
    ingest_url: str
    api_url: str
    keys: dict[str, str]

    def client(self, who: str = "doctor") -> DICOMwebClient:
        return DICOMwebClient(
            url=f"{self.api_url}/dicomweb", headers={"Authorization": f"Bearer {self.keys[who]}"}
        )

    def stored(self) -> dict[str, dict]:
        """The ``instance.stored`` events published so far, by SOP Instance UID."""
        events = [
            json.loads(payload) for topic, payload in self.ctx.bus.sent if topic == "mdd.instance.stored"
        ]  # type: ignore[attr-defined]
        return {event["sop_instance_uid"]: event for event in events}

    def stored_bytes(self, sop_uid: str) -> bytes:
        return self.ctx.store.get_bytes(self.ctx.settings.bucket_dicom, self.stored()[sop_uid]["object_key"])


@asynccontextmanager
async def services_running(settings: Settings) -> AsyncIterator[Running]:
    ctx = build_context(settings)
    ingest = IngestComponent(ctx)
    web = register_status_api(ctx)
    keys = {
        "doctor": create_api_key(ctx.engine, "radiologia", "doctor", [HOSPITAL]),
        "other_hospital": create_api_key(ctx.engine, "otro", "doctor", ["HGE-OTRO"]),
        "staff": create_api_key(ctx.engine, "recepcion", "hospital_staff", [HOSPITAL]),
        "admin": create_api_key(ctx.engine, "admin-dw", "admin", []),
    }
    await ctx.bus.start()
    await ingest.start()
    await web.start()
    try:
        yield Running(
            ctx,
            f"http://127.0.0.1:{settings.ingest_http_port}",
            f"http://127.0.0.1:{settings.api_port}",
            keys,
        )
    finally:
        await web.stop()
        await ingest.stop()
        await ctx.bus.stop()
        ctx.engine.dispose()


def encoded(study: SyntheticStudy, syntaxes: dict[str, str]) -> list[pydicom.Dataset]:
    """The study's views as a modality sends them; ``syntaxes`` maps "L-CC" to a compressed syntax."""
    datasets = []
    for view in study.views:
        ds = pydicom.dcmread(io.BytesIO(view.to_bytes()))
        syntax = syntaxes.get(f"{view.laterality}-{view.view}")
        if syntax:
            ds.compress(syntax)
        datasets.append(ds)
    return datasets


async def stow(running: Running, datasets: list[pydicom.Dataset]) -> None:
    client = DICOMwebClient(url=f"{running.ingest_url}/dicomweb", headers=door_headers(running.ctx))
    await asyncio.to_thread(client.store_instances, datasets)
    await running.ctx.bus.drain()  # type: ignore[attr-defined]


def tag(result: dict, keyword: str) -> object:
    """The first value of an attribute of a DICOM JSON object (by keyword)."""
    value = result[f"{tag_for_keyword(keyword):08X}"].get("Value", [None])[0]
    return value["Alphabetic"] if isinstance(value, dict) else value


def native_pixels(frame: bytes, reference: np.ndarray) -> np.ndarray:
    return np.frombuffer(frame, dtype="<u2").reshape(reference.shape)


async def test_a_viewer_searches_and_opens_studies_stored_through_stow(
    settings: Settings, four_view_study: SyntheticStudy
) -> None:
    other = make_study(seed=8, patient_id="SIN-OTRA")
    syntaxes = {"L-CC": JPEG2000Lossless, "R-MLO": JPEGLSLossless}
    mine = encoded(four_view_study, syntaxes)
    async with services_running(settings) as running:
        await stow(running, mine + encoded(other, {}))
        client = running.client()
        call = asyncio.to_thread

        # QIDO-RS: studies, with the usual filters.
        studies = await call(client.search_for_studies)
        assert sorted(tag(s, "StudyInstanceUID") for s in studies) == sorted(
            [four_view_study.study_uid, other.study_uid]
        )
        [found] = await call(
            client.search_for_studies, search_filters={"PatientID": four_view_study.patient_id}
        )
        first = mine[0]
        assert tag(found, "StudyInstanceUID") == four_view_study.study_uid
        assert tag(found, "PatientName") == str(first.PatientName)
        assert tag(found, "AccessionNumber") == four_view_study.accession_number
        assert tag(found, "StudyDate") == first.StudyDate
        assert found["00080061"]["Value"] == ["MG"]
        assert (tag(found, "NumberOfStudyRelatedSeries"), tag(found, "NumberOfStudyRelatedInstances")) == (
            4,
            4,
        )
        assert tag(found, "RetrieveURL").endswith(f"/dicomweb/studies/{four_view_study.study_uid}")
        by_accession = await call(
            client.search_for_studies, search_filters={"AccessionNumber": other.accession_number}
        )
        assert [tag(s, "StudyInstanceUID") for s in by_accession] == [other.study_uid]
        wildcard = await call(client.search_for_studies, search_filters={"PatientName": "prueba*"})
        assert len(wildcard) == 2
        date = str(first.StudyDate)
        expected_on_date = sorted(
            uid
            for uid, ds in ((four_view_study.study_uid, first), (other.study_uid, encoded(other, {})[0]))
            if ds.StudyDate == date
        )
        in_range = await call(client.search_for_studies, search_filters={"StudyDate": f"{date}-{date}"})
        assert sorted(tag(s, "StudyInstanceUID") for s in in_range) == expected_on_date
        assert await call(client.search_for_studies, search_filters={"StudyDate": "-19000101"}) == []
        assert await call(client.search_for_studies, search_filters={"ModalitiesInStudy": "CT"}) == []
        page = await call(client.search_for_studies, limit=1, offset=1)
        assert [tag(s, "StudyInstanceUID") for s in page] == [tag(studies[1], "StudyInstanceUID")]
        [with_field] = await call(
            client.search_for_studies,
            search_filters={"PatientID": four_view_study.patient_id},
            fields=["IssuerOfPatientID", "InstitutionName", "Rows"],
        )
        assert tag(with_field, "IssuerOfPatientID") == str(first.IssuerOfPatientID)
        # Series and instance attributes have no place in a study's answer (PS3.18 10.6.3.3.1).
        assert f"{tag_for_keyword('InstitutionName'):08X}" not in with_field and f"{tag_for_keyword('Rows'):08X}" not in with_field

        # QIDO-RS: series and instances.
        series = await call(client.search_for_series, four_view_study.study_uid)
        assert [tag(s, "SeriesNumber") for s in series] == [1, 2, 3, 4]
        assert {tag(s, "SeriesInstanceUID") for s in series} == {str(ds.SeriesInstanceUID) for ds in mine}
        assert (
            await call(client.search_for_series, four_view_study.study_uid, search_filters={"Modality": "CT"})
            == []
        )
        left = await call(
            client.search_for_instances, four_view_study.study_uid, search_filters={"ImageLaterality": "L"}
        )
        assert sorted(tag(i, "SOPInstanceUID") for i in left) == sorted(
            str(ds.SOPInstanceUID) for ds in mine if ds.ImageLaterality == "L"
        )
        j2k = next(ds for ds in mine if ds.file_meta.TransferSyntaxUID == JPEG2000Lossless)
        [instance] = await call(
            client.search_for_instances, four_view_study.study_uid, str(j2k.SeriesInstanceUID)
        )
        assert (tag(instance, "SOPInstanceUID"), tag(instance, "Rows"), tag(instance, "Columns")) == (
            str(j2k.SOPInstanceUID),
            j2k.Rows,
            j2k.Columns,
        )

        # WADO-RS: the instance exactly as stored, its metadata, and the study's.
        native = mine[0]
        ids = (four_view_study.study_uid, str(native.SeriesInstanceUID), str(native.SOPInstanceUID))
        retrieved = await call(client.retrieve_instance, *ids)
        stored = pydicom.dcmread(io.BytesIO(running.stored_bytes(ids[2])))
        assert np.array_equal(retrieved.pixel_array, stored.pixel_array)
        async with httpx.AsyncClient(
            base_url=running.api_url, headers={"Authorization": f"Bearer {running.keys['doctor']}"}
        ) as http:
            answer = await http.get(
                f"/dicomweb/studies/{ids[0]}/series/{ids[1]}/instances/{ids[2]}",
                headers={"Accept": 'multipart/related; type="application/dicom"'},
            )
            [(_, content)] = split_parts(answer.content, boundary_of(answer.headers["content-type"]))
            assert content == running.stored_bytes(ids[2])
            warned = await http.get("/dicomweb/studies", params={"PatientWeight": "60"})
            bad_date = await http.get("/dicomweb/studies", params={"StudyDate": "2024"})
            png = await http.get(
                f"/dicomweb/studies/{ids[0]}/series/{ids[1]}/instances/{ids[2]}/rendered",
                headers={"Accept": "image/png"},
            )
            j2k_path = f"/dicomweb/studies/{ids[0]}/series/{j2k.SeriesInstanceUID}/instances/{j2k.SOPInstanceUID}/frames/1"
            as_ohif_asks = await http.get(
                j2k_path,
                headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"},
            )
            jp2_of_native = await http.get(
                f"/dicomweb/studies/{ids[0]}/series/{ids[1]}/instances/{ids[2]}/frames/1",
                headers={"Accept": 'multipart/related; type="image/jp2"'},
            )
        assert warned.status_code == 200 and "PatientWeight" in warned.headers["warning"]
        assert bad_date.status_code == 400 and "StudyDate" in bad_date.json()["detail"]
        assert png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (native.Columns, native.Rows)
        # A native frame asked for as JPEG 2000 is encoded (losslessly) for the viewer.
        [(jp2_headers, jp2_frame)] = split_parts(jp2_of_native.content, boundary_of(jp2_of_native.headers["content-type"]))
        assert jp2_headers["content-type"] == f"image/jp2; transfer-syntax={JPEG2000Lossless}"
        assert np.array_equal(imagecodecs.jpeg2k_decode(jp2_frame), stored.pixel_array)
        [(part_headers, ohif_frame)] = split_parts(
            as_ohif_asks.content, boundary_of(as_ohif_asks.headers["content-type"])
        )
        assert part_headers["content-type"] == f"application/octet-stream; transfer-syntax={JPEG2000Lossless}"
        j2k_kept = pydicom.dcmread(io.BytesIO(running.stored_bytes(str(j2k.SOPInstanceUID))))
        assert np.array_equal(imagecodecs.jpeg2k_decode(ohif_frame), j2k_kept.pixel_array)

        metadata = await call(client.retrieve_study_metadata, four_view_study.study_uid)
        assert sorted(m["00080018"]["Value"][0] for m in metadata) == sorted(
            str(ds.SOPInstanceUID) for ds in mine
        )
        for item in metadata:
            ds = pydicom.Dataset.from_json({key: value for key, value in item.items() if key != "7FE00010"})
            assert str(ds.PatientName) == str(first.PatientName) and ds.Rows == first.Rows
            assert item["7FE00010"]["BulkDataURI"].endswith(f"/instances/{ds.SOPInstanceUID}/frames/1")

        # WADO-RS frames: native pixels for a native instance and decoded from JPEG 2000 and JPEG-LS;
        # the compressed bytes as stored when the viewer asks for them.
        [frame] = await call(
            client.retrieve_instance_frames, *ids, frame_numbers=[1], media_types=(NATIVE_FRAME,)
        )
        assert np.array_equal(native_pixels(frame, stored.pixel_array), stored.pixel_array)
        for ds, media in (
            (j2k, ("image/jp2", JPEG2000Lossless)),
            (
                next(d for d in mine if d.file_meta.TransferSyntaxUID == JPEGLSLossless),
                ("image/jls", JPEGLSLossless),
            ),
        ):
            uids = (four_view_study.study_uid, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
            kept = pydicom.dcmread(io.BytesIO(running.stored_bytes(uids[2])))
            assert kept.file_meta.TransferSyntaxUID == media[1]
            [decoded] = await call(
                client.retrieve_instance_frames, *uids, frame_numbers=[1], media_types=(NATIVE_FRAME,)
            )
            assert np.array_equal(native_pixels(decoded, kept.pixel_array), kept.pixel_array)
            [compressed] = await call(
                client.retrieve_instance_frames, *uids, frame_numbers=[1], media_types=(media,)
            )
            codec = imagecodecs.jpeg2k_decode if media[0] == "image/jp2" else imagecodecs.jpegls_decode
            assert np.array_equal(codec(compressed), kept.pixel_array)
            assert compressed == get_frame(kept.PixelData, 0, number_of_frames=1)

        # What does not exist, for anybody.
        with pytest.raises(HTTPError) as missing:
            await call(client.retrieve_study_metadata, "1.2.3.4.5")
        assert missing.value.response.status_code == 404
        with pytest.raises(HTTPError) as out_of_range:
            await call(client.retrieve_instance_frames, *ids, frame_numbers=[2], media_types=(NATIVE_FRAME,))
        assert out_of_range.value.response.status_code == 404

        # A redelivered instance.stored event leaves the index as it was.
        event = next(payload for topic, payload in running.ctx.bus.sent if topic == "mdd.instance.stored")  # type: ignore[attr-defined]
        await running.ctx.bus.publish(parse_event(event))
        await running.ctx.bus.drain()  # type: ignore[attr-defined]
        [again] = await call(
            client.search_for_studies, search_filters={"StudyInstanceUID": four_view_study.study_uid}
        )
        assert tag(again, "NumberOfStudyRelatedInstances") == 4


async def test_dicomweb_shows_each_caller_only_their_hospitals_studies(
    settings: Settings, four_view_study: SyntheticStudy
) -> None:
    async with services_running(settings) as running:
        await stow(running, encoded(four_view_study, {}))
        view = four_view_study.views[0].dataset
        ids = (four_view_study.study_uid, str(view.SeriesInstanceUID), str(view.SOPInstanceUID))
        call = asyncio.to_thread

        assert len(await call(running.client("doctor").search_for_studies)) == 1
        assert len(await call(running.client("admin").search_for_studies)) == 1
        elsewhere = running.client("other_hospital")
        assert await call(elsewhere.search_for_studies) == []
        assert await call(elsewhere.search_for_instances) == []
        with pytest.raises(HTTPError) as hidden:
            await call(elsewhere.retrieve_instance, *ids)
        assert hidden.value.response.status_code == 404
        with pytest.raises(HTTPError) as staff:
            await call(running.client("staff").search_for_studies)
        assert staff.value.response.status_code == 403
        async with httpx.AsyncClient(base_url=running.api_url) as http:
            anonymous = await http.get(f"/dicomweb/studies/{ids[0]}/metadata")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"


async def test_dicomweb_serves_studies_kept_in_minio(
    settings: Settings, minio, four_view_study: SyntheticStudy
) -> None:  # type: ignore[no-untyped-def]
    bucket = f"dw-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(
        update={
            "store_backend": "minio",
            "minio_endpoint": minio.endpoint,
            "minio_access_key": minio.access_key,
            "minio_secret_key": minio.secret_key,
            "bucket_dicom": bucket,
            "bucket_derived": bucket + "-d",
            "bucket_results": bucket + "-r",
        }
    )
    datasets = encoded(four_view_study, {"R-CC": JPEG2000Lossless})
    async with services_running(settings) as running:
        await stow(running, datasets)
        client = running.client()
        call = asyncio.to_thread
        [study] = await call(client.search_for_studies)
        assert tag(study, "NumberOfStudyRelatedInstances") == 4
        for ds in datasets:
            ids = (four_view_study.study_uid, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
            kept = running.stored_bytes(ids[2])
            async with httpx.AsyncClient(
                base_url=running.api_url, headers={"Authorization": f"Bearer {running.keys['doctor']}"}
            ) as http:
                answer = await http.get(f"/dicomweb/studies/{ids[0]}/series/{ids[1]}/instances/{ids[2]}")
            [(_, content)] = split_parts(answer.content, boundary_of(answer.headers["content-type"]))
            assert content == kept
            reference = pydicom.dcmread(io.BytesIO(kept)).pixel_array
            [frame] = await call(
                client.retrieve_instance_frames, *ids, frame_numbers=[1], media_types=(NATIVE_FRAME,)
            )
            assert np.array_equal(native_pixels(frame, reference), reference)


async def test_metadata_leaves_out_a_linear_voi_lut_function_that_ohif_cannot_read(
    settings: Settings, four_view_study: SyntheticStudy
) -> None:
    """OHIF 3.13 draws black images whose metadata carry VOI LUT Function: LINEAR (its default) is left out."""
    datasets = encoded(four_view_study, {})
    linear, sigmoid = datasets[0], datasets[1]
    assert linear.VOILUTFunction == "LINEAR"
    sigmoid.VOILUTFunction = "SIGMOID"
    async with services_running(settings) as running:
        await stow(running, datasets)
        metadata = await asyncio.to_thread(running.client().retrieve_study_metadata, four_view_study.study_uid)
        by_sop = {item["00080018"]["Value"][0]: item for item in metadata}
        shown_linear, shown_sigmoid = by_sop[str(linear.SOPInstanceUID)], by_sop[str(sigmoid.SOPInstanceUID)]
        assert "00281056" not in shown_linear
        assert shown_linear["00281050"]["Value"] == [float(linear.WindowCenter)]  # the window itself stays
        assert shown_sigmoid["00281056"] == {"vr": "CS", "Value": ["SIGMOID"]}
        kept = pydicom.dcmread(io.BytesIO(running.stored_bytes(str(linear.SOPInstanceUID))))
        assert kept.VOILUTFunction == "LINEAR"  # the stored object is untouched


async def test_a_viewer_on_an_allowed_origin_may_read_dicomweb(
    settings: Settings, four_view_study: SyntheticStudy
) -> None:
    """CORS (MDD_CORS_ALLOW_ORIGINS): OHIF on another origin gets its preflights answered; others get no grant."""
    viewer = "https://visor.hospital.example.mx"
    settings = settings.model_copy(update={"cors_allow_origins": [viewer]})
    async with services_running(settings) as running:
        await stow(running, encoded(four_view_study, {}))
        view = four_view_study.views[0].dataset
        frames = (
            f"/dicomweb/studies/{four_view_study.study_uid}/series/{view.SeriesInstanceUID}"
            f"/instances/{view.SOPInstanceUID}/frames/1"
        )
        preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization,accept"}
        async with httpx.AsyncClient(base_url=running.api_url) as http:
            allowed = await http.options(frames, headers={"Origin": viewer, **preflight})
            stranger = await http.options(frames, headers={"Origin": "https://otro.example.com", **preflight})
            answer = await http.get(
                "/dicomweb/studies",
                headers={"Origin": viewer, "Authorization": f"Bearer {running.keys['doctor']}"},
                params={"PatientWeight": "60"},
            )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == viewer
        assert {"authorization", "accept"} <= {
            h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")
        }
        assert "access-control-allow-origin" not in stranger.headers
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == viewer
        assert "warning" in answer.headers["access-control-expose-headers"].lower()  # the viewer may read it


async def test_without_allowed_origins_the_api_grants_no_other_origin(settings: Settings) -> None:
    async with services_running(settings) as running:
        async with httpx.AsyncClient(base_url=running.api_url) as http:
            answer = await http.get(
                "/dicomweb/studies",
                headers={"Origin": "https://visor.hospital.example.mx", "Authorization": f"Bearer {running.keys['doctor']}"},
            )
        assert answer.status_code == 200
        assert not any(name.startswith("access-control-") for name in answer.headers)


async def test_one_base_url_stores_searches_and_retrieves_and_transcodes(settings: Settings) -> None:
    study = make_study(seed=16_010, hospital_id=HOSPITAL)
    async with services_running(settings.model_copy(update={"ingest_url": None})) as running:
        client = running.client("doctor")
        stored = await asyncio.to_thread(client.store_instances, encoded(study, {"L-CC": JPEG2000Lossless}))
        await running.ctx.bus.drain()  # type: ignore[attr-defined]
        urls = [str(item.RetrieveURL) for item in stored.ReferencedSOPSequence]
        assert len(urls) == 4 and all(url.startswith(f"{running.api_url}/dicomweb/studies/{study.study_uid}/") for url in urls)
        assert {event["hospital_id"] for event in running.stored().values()} == {HOSPITAL}  # the doctor's hospital
        [found] = await asyncio.to_thread(client.search_for_studies, search_filters={"StudyInstanceUID": study.study_uid})
        assert tag(found, "NumberOfStudyRelatedInstances") == 4

        # Who may not see identities may not store either; a hospital the caller does not belong to is refused.
        with pytest.raises(HTTPError) as staff:
            await asyncio.to_thread(running.client("staff").store_instances, encoded(study, {}))
        assert staff.value.response.status_code == 403
        async with httpx.AsyncClient(base_url=running.api_url, headers={"Authorization": f"Bearer {running.keys['doctor']}"}) as http:
            elsewhere = await http.post("/dicomweb/studies?hospital=HGE-OTRO", content=b"", headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=x'})
            assert elsewhere.status_code == 403

            # QIDO-RS: fuzzy matching is refused with the standard's warning; /series carries its study's attributes.
            fuzzy = await http.get("/dicomweb/studies", params={"PatientName": "prueba*", "fuzzymatching": "true"})
            assert fuzzy.status_code == 200 and "The fuzzymatching parameter is not supported" in fuzzy.headers["warning"]
            all_series = (await http.get("/dicomweb/series", params={"StudyInstanceUID": study.study_uid})).json()
            assert len(all_series) == 4
            assert all(tag(s, "NumberOfStudyRelatedInstances") == 4 and tag(s, "ModalitiesInStudy") == "MG" for s in all_series)
            assert all(tag(s, "PatientID") == study.patient_id and tag(s, "StudyDate") for s in all_series)

            # WADO-RS transcodes: the JPEG 2000 instance as Explicit VR Little Endian, a native one as JPEG-LS.
            j2k = next(v for v in study.views if (v.laterality, v.view) == ("L", "CC")).dataset
            [j2k_event] = [e for e in running.stored().values() if e["transfer_syntax_uid"] == JPEG2000Lossless]
            path = f"/dicomweb/studies/{study.study_uid}/series/{j2k.SeriesInstanceUID}/instances/{j2k_event['sop_instance_uid']}"
            plain = await http.get(path, headers={"Accept": 'multipart/related; type="application/dicom"'})
            [(headers, content)] = split_parts(plain.content, boundary_of(plain.headers["content-type"]))
            assert headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
            decoded = pydicom.dcmread(io.BytesIO(content))
            assert decoded.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" and np.array_equal(decoded.pixel_array, j2k.pixel_array)
            native = next(v for v in study.views if (v.laterality, v.view) == ("R", "MLO")).dataset
            path = f"/dicomweb/studies/{study.study_uid}/series/{native.SeriesInstanceUID}/instances/{native.SOPInstanceUID}"
            jls = await http.get(path, headers={"Accept": f'multipart/related; type="application/dicom"; transfer-syntax={JPEGLSLossless}'})
            [(headers, content)] = split_parts(jls.content, boundary_of(jls.headers["content-type"]))
            as_jls = pydicom.dcmread(io.BytesIO(content))
            assert as_jls.file_meta.TransferSyntaxUID == JPEGLSLossless and np.array_equal(as_jls.pixel_array, native.pixel_array)
            lossy = await http.get(path, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'})
            assert lossy.status_code == 406  # no lossy transcoding of a mammogram
