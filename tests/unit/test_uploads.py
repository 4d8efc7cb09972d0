"""ZIP uploads are bounded: bombs are refused or reported per file, entries never sit whole in memory."""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path

import pytest

from services.ingest.intake import StoreOutcome
from services.ingest.uploads import UploadRefused, ZipLimits, ingest_zip
from shared.settings import Settings
from shared.synth import make_study
from tests.corpus import peak_memory

MB = 1024 * 1024
LIMITS = ZipLimits(max_entries=50, max_entry_bytes=64 * MB, max_total_bytes=256 * MB, max_ratio=200)


class Recorder:
    """An ``accept`` that keeps what it was given: the spooled file's size and first bytes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, spooled: Path) -> StoreOutcome:
        assert isinstance(spooled, Path)
        self.sizes.append(spooled.stat().st_size)
        return StoreOutcome(0x0000, "Almacenada / stored")


def _zeros(bundle: zipfile.ZipFile, name: str, size: int) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with bundle.open(info, "w", force_zip64=True) as entry:
        block = bytes(MB)
        for _ in range(size // MB):
            entry.write(block)


@pytest.fixture(scope="module")
def good_dicom() -> bytes:
    return make_study(seed=11).views[0].to_bytes()


def test_a_good_zip_is_ingested_from_spooled_files(tmp_path: Path, good_dicom: bytes) -> None:
    archive = tmp_path / "estudio.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("carpeta/vista.dcm", good_dicom)
        bundle.writestr("leeme.txt", b"hola")
    accept = Recorder()
    report = ingest_zip(archive, accept, LIMITS)
    assert (report.stored, report.skipped, report.failed) == (1, 1, 0)
    assert accept.sizes == [len(good_dicom)]
    assert [p.name for p in tmp_path.iterdir()] == ["estudio.zip"]  # spool files are gone


def test_a_large_entry_is_streamed_never_read_whole(tmp_path: Path, good_dicom: bytes) -> None:
    archive = tmp_path / "grande.zip"
    big = good_dicom + bytes(range(256)) * (40 * MB // 256)  # about 40 MB, stored as is
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:
        bundle.writestr("grande.dcm", big)
    del big
    accept = Recorder()
    with peak_memory() as peak:
        report = ingest_zip(archive, accept, LIMITS)
    assert report.stored == 1 and accept.sizes == [len(good_dicom) + 40 * MB // 256 * 256]
    assert peak[0] < 8 * MB, peak


def test_a_zip_bomb_entry_fails_alone_by_its_declared_size_and_ratio(tmp_path: Path, good_dicom: bytes) -> None:
    archive = tmp_path / "bomba.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        _zeros(bundle, "bomba.dcm", 100 * MB)
        bundle.writestr("vista.dcm", good_dicom)
    accept = Recorder()
    limits = ZipLimits(max_entries=50, max_entry_bytes=64 * MB, max_total_bytes=256 * MB, max_ratio=10**6)
    report = ingest_zip(archive, accept, limits)
    bomb, view = report.files
    assert bomb.status == "failed" and "máximo es 67108864 / the entry is 104857600 bytes" in bomb.reason
    assert view.status == "stored" and accept.sizes == [len(good_dicom)]

    # Zeros deflate about 1000:1; the archive as a whole, diluted by the good view, stays under 500:1.
    ratio_report = ingest_zip(archive, Recorder(), ZipLimits(50, 256 * MB, 10**12, max_ratio=500))
    assert ratio_report.files[0].status == "failed" and "500:1" in ratio_report.files[0].reason
    assert ratio_report.files[1].status == "stored"


def test_the_whole_archive_is_refused_past_its_limits(tmp_path: Path) -> None:
    many = tmp_path / "muchas.zip"
    with zipfile.ZipFile(many, "w") as bundle:
        for index in range(51):
            bundle.writestr(f"{index}.txt", b"x")
    with pytest.raises(UploadRefused) as refused:
        ingest_zip(many, Recorder(), LIMITS)
    assert refused.value.status_code == 413 and "51 entradas" in refused.value.reason

    huge = tmp_path / "enorme.zip"
    with zipfile.ZipFile(huge, "w", zipfile.ZIP_DEFLATED) as bundle:
        for index in range(5):
            _zeros(bundle, f"{index}.dcm", 60 * MB)
    with pytest.raises(UploadRefused) as refused:
        ingest_zip(huge, Recorder(), LIMITS)
    assert refused.value.status_code == 413 and "314572800 bytes" in refused.value.reason

    with pytest.raises(UploadRefused) as refused:
        ingest_zip(huge, Recorder(), ZipLimits(50, 64 * MB, 10**12, max_ratio=200))
    assert refused.value.status_code == 413 and "200:1" in refused.value.reason


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "superpuesto.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        _zeros(bundle, "0.dcm", 2 * MB)
        first = bundle.filelist[0]
        for index in range(1, 40):  # central directory entries that all point at the first entry's data
            twin = copy.copy(first)
            twin.filename = twin.orig_filename = f"{index}.dcm"
            bundle.filelist.append(twin)
    with pytest.raises(UploadRefused) as refused:
        ingest_zip(archive, Recorder(), ZipLimits(50, 64 * MB, 10**12, max_ratio=10**6))
    assert refused.value.status_code == 400 and "superpuestas" in refused.value.reason


def test_a_nested_zip_is_not_opened(tmp_path: Path, good_dicom: bytes) -> None:
    inner = tmp_path / "interno.zip"
    with zipfile.ZipFile(inner, "w") as bundle:
        bundle.writestr("vista.dcm", good_dicom)
    outer = tmp_path / "externo.zip"
    with zipfile.ZipFile(outer, "w") as bundle:
        bundle.write(inner, "anidado.zip")
        bundle.writestr("vista.dcm", good_dicom)
    accept = Recorder()
    nested, view = ingest_zip(outer, accept, LIMITS).files
    assert nested.status == "failed" and "ZIP anidado" in nested.reason and "nested ZIP" in nested.reason
    assert view.status == "stored" and accept.sizes == [len(good_dicom)]


def test_limits_come_from_the_settings() -> None:
    limits = ZipLimits.from_settings(Settings(upload_max_entries=7, instance_max_bytes=2048, upload_max_total_bytes=4096,
                                              upload_max_ratio=9))
    assert limits == ZipLimits(max_entries=7, max_entry_bytes=2048, max_total_bytes=4096, max_ratio=9)
