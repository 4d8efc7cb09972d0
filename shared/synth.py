"""Generador de estudios sintéticos de mastografía / synthetic mammography studies.

The one place that fabricates DICOM mammograms for tests, the demo and model training.
Every study is reproducible from an integer seed: same seed, same UIDs, same bytes.

Orientation convention (the real one, IHE Mammography / DICOM MG): images are stored
as seen in the standard mirrored hanging, so a RIGHT breast has its chest wall on the
image's RIGHT edge (nipple pointing left) and a LEFT breast has its chest wall on the
image's LEFT edge (nipple pointing right). :data:`STORED_CHEST_WALL_SIDE` is the single
definition of that rule; the preprocess pipeline mirrors images from it.
"""

from __future__ import annotations

import datetime as _dt
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid
from scipy import ndimage

Laterality = Literal["R", "L"]
View = Literal["CC", "MLO"]
FindingKind = Literal["mass", "calcifications"]
Photometric = Literal["MONOCHROME1", "MONOCHROME2"]

#: Side of the stored image where the chest wall lies, per breast laterality.
STORED_CHEST_WALL_SIDE: Final[dict[str, Literal["left", "right"]]] = {"R": "right", "L": "left"}

#: Digital Mammography X-Ray Image Storage - For Presentation.
MG_FOR_PRESENTATION: Final[str] = "1.2.840.10008.5.1.4.1.1.1.2"
#: Digital Mammography X-Ray Image Storage - For Processing.
MG_FOR_PROCESSING: Final[str] = "1.2.840.10008.5.1.4.1.1.1.2.1"

MANUFACTURER: Final[str] = "Mexican Deep DICOM (sintético)"
MAX_VALUE: Final[int] = 4095  # 12 bits stored
FULL_FIELD_ROWS: Final[int] = 4096
FULL_FIELD_COLS: Final[int] = 3328
FULL_FIELD_SPACING_MM: Final[float] = 0.1

# PatientOrientation (row direction \ column direction) for the stored convention.
_PATIENT_ORIENTATION: Final[dict[tuple[str, str], str]] = {
    ("R", "CC"): "P\\L",
    ("L", "CC"): "A\\R",
    ("R", "MLO"): "P\\F",
    ("L", "MLO"): "A\\F",
}
_VIEW_CODES: Final[dict[str, tuple[str, str, str]]] = {
    "CC": ("399162004", "SCT", "cranio-caudal"),
    "MLO": ("399368009", "SCT", "medio-lateral oblique"),
}
#: The four views of a screening study, in the order studies are drawn.
STANDARD_VIEWS: Final[tuple[tuple[Laterality, View], ...]] = (
    ("R", "CC"),
    ("L", "CC"),
    ("R", "MLO"),
    ("L", "MLO"),
)
_GIVEN_NAMES: Final[tuple[str, ...]] = (
    "MARIA GUADALUPE", "ROSA ELENA", "JUANA", "VERONICA", "PATRICIA", "ALEJANDRA",
    "LETICIA", "MARTHA", "CLAUDIA", "ADRIANA", "SOFIA", "XIMENA",
)
_FAMILY_NAMES: Final[tuple[str, ...]] = (
    "HERNANDEZ", "GARCIA", "MARTINEZ", "LOPEZ", "GONZALEZ", "PEREZ",
    "RODRIGUEZ", "SANCHEZ", "RAMIREZ", "CRUZ", "FLORES", "GOMEZ",
)


@dataclass(frozen=True)
class Finding:
    """A lesion painted into a view; coordinates are in the image as stored.

    The second generator (:mod:`shared.synth_v2`) also names the lesion, its BI-RADS category and
    whether it is malignant.
    """

    kind: FindingKind
    center_rc: tuple[int, int]
    radius_px: int
    lesion: str = ""
    malignant: bool | None = None
    birads: int | None = None


@dataclass(frozen=True)
class StudyIdentity:
    """Patient and study attributes shared by every view of one study."""

    seed: int
    study_uid: str
    accession_number: str
    patient_id: str
    patient_name: str
    birth_date: str
    study_date: str
    study_time: str
    hospital_id: str


@dataclass
class SyntheticView:
    """One synthetic image plus the ground truth used to draw it."""

    dataset: FileDataset
    laterality: Laterality
    view: View
    breast_mask: np.ndarray
    pectoral_mask: np.ndarray
    findings: list[Finding] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """Return the view as a DICOM Part 10 file (preamble, file meta, dataset)."""
        buffer = io.BytesIO()
        self.dataset.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the Part 10 file to ``path`` (parent folders are created)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.to_bytes())
        return target


@dataclass
class SyntheticStudy:
    """A four-view screening study of one synthetic patient."""

    study_uid: str
    accession_number: str
    patient_id: str
    hospital_id: str
    views: list[SyntheticView]

    def save(self, folder: str | Path) -> list[Path]:
        """Write one ``<laterality>_<view>.dcm`` per view into ``folder``."""
        base = Path(folder)
        return [v.save(base / f"{v.laterality}_{v.view}.dcm") for v in self.views]


def study_identity(
    seed: int = 0, *, hospital_id: str = "HOSP-DEMO", patient_id: str | None = None
) -> StudyIdentity:
    """Derive deterministic patient/study attributes (UIDs, names, dates) from ``seed``."""
    rng = np.random.default_rng([seed, 0x5EED])
    pid = patient_id if patient_id is not None else f"SIN{seed:07d}"
    given = _GIVEN_NAMES[int(rng.integers(len(_GIVEN_NAMES)))]
    family = _FAMILY_NAMES[int(rng.integers(len(_FAMILY_NAMES)))]
    birth = _dt.date(1950, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 30 * 365)))
    study_day = _dt.date(2024, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 365)))
    seconds = int(rng.integers(7 * 3600, 19 * 3600))
    return StudyIdentity(
        seed=seed,
        study_uid=generate_uid(entropy_srcs=["mdd-synth", "study", str(seed), hospital_id, pid]),
        accession_number=f"SIN{seed:09d}"[-16:],
        patient_id=pid,
        patient_name=f"PRUEBA {family}^{given}",
        birth_date=birth.strftime("%Y%m%d"),
        study_date=study_day.strftime("%Y%m%d"),
        study_time=f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}",
        hospital_id=hospital_id,
    )


def make_view(
    *,
    laterality: Laterality,
    view: View,
    rows: int = 512,
    cols: int = 416,
    seed: int = 0,
    photometric: Photometric = "MONOCHROME2",
    finding: FindingKind | None = None,
    density: float = 0.3,
    study: StudyIdentity | None = None,
) -> SyntheticView:
    """Draw one synthetic mammogram.

    ``density`` is the fibroglandular fraction of the breast (0..1). ``finding`` paints a
    mass or a calcification cluster inside the breast, away from skin and pectoral muscle.
    The same arguments always give byte-identical output.
    """
    if laterality not in ("R", "L") or view not in ("CC", "MLO"):
        raise ValueError(f"vista no soportada / unsupported view: {laterality} {view}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"interpretación fotométrica no soportada / unsupported: {photometric}")
    if rows < 64 or cols < 64:
        raise ValueError("la imagen debe medir al menos 64x64 / image must be at least 64x64")
    if not 0.0 <= density <= 1.0:
        raise ValueError("density debe estar entre 0 y 1 / density must be within 0..1")
    identity = study if study is not None else study_identity(seed)
    rng = np.random.default_rng([seed, ord(laterality), 1 if view == "MLO" else 0, 0xB2EA57])

    values, breast, pectoral, room = _draw_anatomy(rng, rows, cols, view, density)
    findings: list[Finding] = []
    if finding is not None:
        findings.append(_paint_finding(rng, values, room, finding))
    pixels = _add_noise(rng, values, breast)

    return finish_view(identity, laterality, view, pixels, breast, pectoral, findings, photometric)


def finish_view(
    identity: StudyIdentity,
    laterality: str,
    view: str,
    pixels: np.ndarray,
    breast: np.ndarray,
    pectoral: np.ndarray,
    findings: list[Finding],
    photometric: str,
    *,
    invert: bool = True,
) -> SyntheticView:
    """Turn a drawn image (chest wall on the left) into a stored view: mirror, invert, DICOM.

    ``invert`` turns 12-bit MONOCHROME2 values into MONOCHROME1 ones; a caller that already
    rendered its photometric interpretation passes False.
    """
    cols = pixels.shape[1]
    if STORED_CHEST_WALL_SIDE[laterality] == "right":
        # Drawn with the chest wall on the left; mirror into the stored convention.
        pixels, breast, pectoral = pixels[:, ::-1], breast[:, ::-1], pectoral[:, ::-1]
        findings = [replace(f, center_rc=(f.center_rc[0], cols - 1 - f.center_rc[1])) for f in findings]
    if photometric == "MONOCHROME1" and invert:
        pixels = MAX_VALUE - pixels
    pixels = np.ascontiguousarray(pixels, dtype=np.uint16)

    dataset = _build_dataset(identity, laterality, view, pixels, photometric)
    return SyntheticView(
        dataset=dataset,
        laterality=laterality,
        view=view,
        breast_mask=np.ascontiguousarray(breast),
        pectoral_mask=np.ascontiguousarray(pectoral),
        findings=findings,
    )


def make_study(
    *,
    seed: int = 0,
    rows: int = 512,
    cols: int = 416,
    photometric: Photometric = "MONOCHROME2",
    finding: FindingKind | None = None,
    finding_laterality: Laterality = "L",
    density: float = 0.3,
    hospital_id: str = "HOSP-DEMO",
    patient_id: str | None = None,
    version: Literal[1, 2] = 1,
) -> SyntheticStudy:
    """Draw the four screening views R-CC, L-CC, R-MLO, L-MLO of one patient.

    A ``finding`` appears in both views (CC and MLO) of ``finding_laterality``. ``version=2`` draws
    the study with the second generator (:mod:`shared.synth_v2`: full-field phantoms without
    shortcuts, ``rows`` and ``cols`` then come from its detector and pixel spacing).
    """
    if version == 2:
        from shared import synth_v2

        case = synth_v2.screening_case(
            seed, finding=finding, finding_laterality=finding_laterality, dense_fraction=density, photometric=photometric
        )
        return synth_v2.make_study(case, hospital_id=hospital_id, patient_id=patient_id)
    identity = study_identity(seed, hospital_id=hospital_id, patient_id=patient_id)
    views = [
        make_view(
            laterality=lat,
            view=vw,
            rows=rows,
            cols=cols,
            seed=seed,
            photometric=photometric,
            finding=finding if lat == finding_laterality else None,
            density=density,
            study=identity,
        )
        for lat, vw in STANDARD_VIEWS
    ]
    return SyntheticStudy(
        study_uid=identity.study_uid,
        accession_number=identity.accession_number,
        patient_id=identity.patient_id,
        hospital_id=hospital_id,
        views=views,
    )


def write_studies(folder: str | Path, count: int, seed: int = 0, **kw: object) -> list[SyntheticStudy]:
    """Write ``count`` studies (seeds ``seed .. seed+count-1``) as ``folder/<accession>/*.dcm``.

    Extra keyword arguments go to :func:`make_study`.
    """
    base = Path(folder)
    studies: list[SyntheticStudy] = []
    for offset in range(count):
        study = make_study(seed=seed + offset, **kw)  # type: ignore[arg-type]
        study.save(base / study.accession_number)
        studies.append(study)
    return studies


# --- drawing -------------------------------------------------------------------------------


def _interp_matrix(fine: int, coarse: int) -> np.ndarray:
    """Linear-interpolation weights (fine x coarse) mapping a coarse axis onto a fine one."""
    pos = np.clip((np.arange(fine) + 0.5) * coarse / fine - 0.5, 0.0, coarse - 1.0)
    lo = np.minimum(pos.astype(np.int64), coarse - 2)
    frac = (pos - lo).astype(np.float32)
    weights = np.zeros((fine, coarse), dtype=np.float32)
    weights[np.arange(fine), lo] = 1.0 - frac
    weights[np.arange(fine), lo + 1] = frac
    return weights


def _smooth_field(rng: np.random.Generator, rows: int, cols: int, cells: int, sigma: float) -> np.ndarray:
    """Smoothed noise in 0..1 drawn on a coarse grid and upsampled to ``rows x cols``."""
    coarse_r = max(8, cells * rows // max(rows, cols))
    coarse_c = max(8, cells * cols // max(rows, cols))
    coarse = ndimage.gaussian_filter(rng.standard_normal((coarse_r, coarse_c)), sigma, mode="reflect")
    coarse = ((coarse - coarse.min()) / max(float(np.ptp(coarse)), 1e-9)).astype(np.float32)
    # Separable bilinear upsampling as two small matrix products: far faster than ndimage.zoom.
    return _interp_matrix(rows, coarse_r) @ coarse @ _interp_matrix(cols, coarse_c).T


def _wobble(rng: np.random.Generator, theta: np.ndarray, amplitude: float, harmonics: int) -> np.ndarray:
    """Random smooth periodic perturbation of a contour as a function of angle."""
    out = np.zeros_like(theta)
    for k in range(2, 2 + harmonics):
        out += (amplitude / k) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    return out


def _draw_anatomy(
    rng: np.random.Generator, rows: int, cols: int, view: View, density: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw the anatomy with the chest wall on the left edge.

    Returns (values float32, breast mask, pectoral mask, room), where ``room`` is the distance
    in pixels to the nearest place a lesion must not touch (skin, muscle, image edge).
    """
    f32 = np.float32
    # Half ellipse attached to the chest wall (column 0), nipple pointing right.
    if view == "CC":
        center_r = rows * rng.uniform(0.47, 0.53)
        semi_r = rows * rng.uniform(0.36, 0.42)
    else:
        center_r = rows * rng.uniform(0.50, 0.56)
        semi_r = rows * rng.uniform(0.42, 0.46)
    semi_c = cols * rng.uniform(0.66, 0.80)

    r = np.arange(rows, dtype=f32)[:, None]
    c = np.arange(cols, dtype=f32)[None, :]
    u = (r - f32(center_r)) / f32(semi_r)
    v = c / f32(semi_c)
    rad = np.sqrt(u * u + v * v)
    np.maximum(rad, f32(1e-6), out=rad)
    # The contour wobbles with the polar angle; sin(angle) = u / rad indexes a lookup table.
    table = 1.0 + _wobble(rng, np.arcsin(np.linspace(-1.0, 1.0, 2048, dtype=f32)), 0.05, 4)
    index = ((u / rad + f32(1.0)) * f32(0.5 * 2047)).astype(np.int32)
    edge = table[np.clip(index, 0, 2047)]
    del index
    # Distance to the contour in pixels, from the analytic gradient of the normalised radius.
    grad = np.sqrt((u / f32(semi_r)) ** 2 + (v / f32(semi_c)) ** 2)
    grad /= rad
    dist = edge - rad
    dist /= grad
    del grad, edge
    breast = dist > 0
    room = np.minimum(dist, c)

    pectoral = np.zeros((rows, cols), dtype=bool)
    if view == "MLO":
        top = f32(cols * rng.uniform(0.30, 0.40))
        height = f32(rows * rng.uniform(0.50, 0.62))
        line = (c / top + r / height - f32(1.0)) / np.sqrt(1.0 / top**2 + 1.0 / height**2)
        pectoral = line < 0
        np.minimum(room, line, out=room)
        # The muscle reaches the top edge; the body region is breast plus muscle.
        dist[pectoral] = rows
        breast |= pectoral
        del line

    scale = max(rows, cols) / 512.0
    skin_px = max(2.0, 3.0 * scale)
    # Compressed thickness falls off towards the skin, so the periphery looks darker.
    ramp = np.clip(dist * f32(1.0 / (30.0 * scale)), 0.0, 1.0)
    values = _smooth_field(rng, rows, cols, 48, 2.0)
    values *= f32(350.0)
    values += f32(1350.0)
    values *= ramp * f32(0.2) + f32(0.8)

    if density > 0:
        # Two scales: lobes plus finer trabecular detail.
        texture = _smooth_field(rng, rows, cols, 96, 1.6)
        texture *= f32(0.7)
        texture += _smooth_field(rng, rows, cols, 224, 1.3) * f32(0.3)
        # Glandular tissue concentrates behind the nipple, away from the skin.
        texture *= np.clip(f32(1.0) - rad, 0.0, 1.0) * f32(0.45) + f32(0.55)
        texture *= ramp * f32(0.7) + f32(0.3)
        inside = breast & ~pectoral
        step = max(1, int(scale))
        level = (
            f32(np.quantile(texture[::step, ::step][inside[::step, ::step]], 1.0 - density))
            if density < 1
            else f32(-1.0)
        )
        texture -= level
        weight = np.clip(texture * f32(1 / 0.04) + f32(0.5), 0.0, 1.0)
        weight *= inside
        gland = np.clip(texture * f32(1 / 0.25), 0.0, 1.0)
        gland *= f32(800.0)
        gland += f32(2200.0)
        gland -= values
        gland *= weight
        values += gland
        del texture, weight, gland

    values[breast & ~pectoral & (dist < skin_px)] = 2500.0
    if view == "MLO":
        muscle = _smooth_field(rng, rows, cols, 32, 1.5) * f32(120.0) + f32(3150.0)
        values[pectoral] = muscle[pectoral]
    values[~breast] = 0.0
    return values, breast, pectoral, room


def _paint_finding(
    rng: np.random.Generator, values: np.ndarray, room: np.ndarray, kind: FindingKind
) -> Finding:
    """Paint a mass or calcification cluster in place and return where it went."""
    rows, cols = values.shape
    scale = min(rows, cols) / 416.0
    radius = max(4, int(round(rng.uniform(12, 24) * scale)))
    # Irregular margins reach ~1.5 radius; keep the whole lesion clear of skin and muscle.
    candidates = np.flatnonzero(room > 1.6 * radius + 6 * scale + 4)
    if candidates.size == 0:
        candidates = np.flatnonzero(room >= 0.8 * room.max())
    idx = int(candidates[rng.integers(candidates.size)])
    cr, cc = divmod(idx, cols)

    r0, r1 = max(0, cr - 2 * radius), min(rows, cr + 2 * radius + 1)
    c0, c1 = max(0, cc - 2 * radius), min(cols, cc + 2 * radius + 1)
    rr = np.arange(r0, r1, dtype=np.float32)[:, None] - cr
    ccol = np.arange(c0, c1, dtype=np.float32)[None, :] - cc
    patch = values[r0:r1, c0:c1]
    if kind == "mass":
        theta = np.arctan2(rr, ccol)
        # Irregular (lobulated, slightly spiculated) margin.
        edge = radius * (1.0 + _wobble(rng, theta, 0.35, 6) + 0.06 * np.sin(13 * theta))
        rho = np.sqrt(rr * rr + ccol * ccol)
        profile = np.clip((edge - rho) / max(1.5, 0.15 * radius), 0.0, 1.0)
        target = np.maximum(patch, 3000.0 + 200.0 * profile)
        patch += profile * (target - patch)
    else:
        dot = max(1.0, 1.2 * scale)
        for _ in range(int(rng.integers(5, 16))):
            ang, rho_dot = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0, 1))
            dr, dc = rho_dot * np.sin(ang), rho_dot * np.cos(ang)
            d2 = (rr - dr) ** 2 + (ccol - dc) ** 2
            patch[d2 <= dot * dot] = rng.uniform(3800, 4050)
    return Finding(kind, (int(cr), int(cc)), int(radius))


def _add_noise(rng: np.random.Generator, values: np.ndarray, breast: np.ndarray) -> np.ndarray:
    """Quantum-like noise (variance grows with signal) and a dark, noisy background."""
    noise = rng.standard_normal(values.shape, dtype=np.float32)
    body = values + noise * (0.6 * np.sqrt(np.maximum(values, 1.0)))
    background = 45.0 + 15.0 * noise
    out = np.where(breast, np.clip(body, 300.0, MAX_VALUE), np.clip(background, 0.0, 100.0))
    return np.rint(out).astype(np.uint16)


# --- DICOM -----------------------------------------------------------------------------------

#: Anatomic Region Sequence of a breast image (CID 4031).
_BREAST_REGION: Final[tuple[str, str, str]] = ("76752008", "SCT", "Breast")


def add_mammography_modules(
    ds: Dataset,
    photometric: str,
    *,
    detector_type: str = "DIRECT",
    burned_in: bool = False,
    quality_control: bool = False,
) -> None:
    """The attributes the Digital Mammography X-Ray IOD requires beyond the image itself (DX Anatomy
    Imaged, DX Image, DX Detector, Mammography Image and Acquisition Context modules), so that
    ``dciodvfy`` finds no error.

    Pixel Intensity Relationship Sign and Presentation LUT Shape follow ``photometric``: in
    MONOCHROME2 the breast (less X-ray intensity) has the higher values (sign -1, IDENTITY); in
    MONOCHROME1 the lower ones (sign +1, INVERSE).
    """
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = _BREAST_REGION
    ds.AnatomicRegionSequence = [region]
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.OrganExposed = "BREAST"
    ds.PartialView = "NO"
    ds.BreastImplantPresent = "NO"
    ds.QualityControlImage = "YES" if quality_control else "NO"
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    ds.LossyImageCompression = "00"
    ds.DetectorType = detector_type
    monochrome1 = photometric == "MONOCHROME1"
    ds.PixelIntensityRelationshipSign = 1 if monochrome1 else -1
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.AcquisitionContextSequence = []



def _build_dataset(
    identity: StudyIdentity, laterality: Laterality, view: View, pixels: np.ndarray, photometric: Photometric
) -> FileDataset:
    """Wrap ``pixels`` in a complete MG For Presentation file dataset."""
    rows, cols = pixels.shape
    key = ["mdd-synth", identity.study_uid, laterality, view]
    series_uid = generate_uid(entropy_srcs=[*key, "series"])
    sop_uid = generate_uid(entropy_srcs=[*key, "sop"])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MDD_SYNTH_1"

    ds = FileDataset(None, Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = MG_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = identity.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = identity.study_time
    ds.AccessionNumber = identity.accession_number
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = identity.hospital_id
    ds.ReferringPhysicianName = "MEDICO^REFERENTE"
    ds.StudyDescription = "MASTOGRAFIA DE TAMIZAJE BILATERAL"
    ds.SeriesDescription = f"{laterality} {view}"
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.IssuerOfPatientID = identity.hospital_id
    ds.PatientBirthDate = identity.birth_date
    ds.PatientSex = "F"
    ds.BodyPartExamined = "BREAST"
    ds.ViewPosition = view
    ds.StudyInstanceUID = identity.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = identity.accession_number[-16:]
    ds.SeriesNumber = 1 + [*STANDARD_VIEWS].index((laterality, view))
    ds.InstanceNumber = 1
    ds.PatientOrientation = _PATIENT_ORIENTATION[(laterality, view)].split("\\")
    ds.ImageLaterality = laterality
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _VIEW_CODES[view]
    code.ViewModifierCodeSequence = []
    ds.ViewCodeSequence = [code]
    add_mammography_modules(ds, photometric)
    ds.PixelIntensityRelationship = "LOG"

    row_mm = FULL_FIELD_SPACING_MM * FULL_FIELD_ROWS / rows
    col_mm = FULL_FIELD_SPACING_MM * FULL_FIELD_COLS / cols
    spacing = [f"{row_mm:.6g}", f"{col_mm:.6g}"]
    ds.PixelSpacing = spacing
    ds.ImagerPixelSpacing = spacing
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    center, width = 2150, 2900
    ds.WindowCenter = str(MAX_VALUE - center if photometric == "MONOCHROME1" else center)
    ds.WindowWidth = str(width)
    ds.VOILUTFunction = "LINEAR"
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    return ds


__all__ = [
    "Finding",
    "MG_FOR_PRESENTATION",
    "MG_FOR_PROCESSING",
    "STANDARD_VIEWS",
    "add_mammography_modules",
    "finish_view",
    "STORED_CHEST_WALL_SIDE",
    "StudyIdentity",
    "SyntheticStudy",
    "SyntheticView",
    "make_study",
    "make_view",
    "study_identity",
    "write_studies",
]

