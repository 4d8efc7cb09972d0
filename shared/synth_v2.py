"""Fantomas sin atajos / phantoms without shortcuts: the second version of the synthetic generator.

The first version (:mod:`shared.synth`) can be read off its pixel levels: suspicious masses start
above the brightest gland, calcifications are the only pixels above the window, density is the
bright-area fraction. This version draws the breast as X-ray attenuation and lets classes differ
the way they do on real mammograms:

- anatomy: a compressed breast whose thickness falls off towards the skin, fibroglandular tissue
  from power-law noise (spectrum ∝ f^-β, β ≈ 3, as measured on mammograms) whose share of the breast
  is the density (continuous, borderline cases included), Cooper's ligaments, vessels, the nipple,
  the skin line, a pectoral muscle with a curved edge (MLO), axillary lymph nodes;
- findings of the same attenuation as gland, so a mass can hide in dense tissue: benign masses are
  round or oval with sharp or gently lobulated margins, malignant ones irregular with indistinct
  margins or spiculated, and both span the same sizes (10 to 28 mm); calcifications are 0.1 to 1.5 mm at the
  image's own pixel spacing, their contrast set by their size (calcium attenuation), benign ones
  large, round and scattered or vascular, malignant ones small, pleomorphic and clustered or
  fine-linear and branching; several findings per breast;
- acquisition: full-field detectors (18 x 24 or 24 x 30 cm) at 0.05 to 0.1 mm, quantum noise from
  the exposure, correlated by the detector, burned-in laterality markers and labels (the compression
  paddle's edge is not drawn);
- rendering, drawn per study: For Presentation (a vendor's tone curve and edge enhancement) or For
  Processing (the raw exposure, linear), 10 to 16 stored bits, MONOCHROME1 or 2, windows with
  LINEAR, LINEAR_EXACT or SIGMOID VOI LUT functions or a VOI LUT table, and different vendors'
  tag styles. Every file passes the Digital Mammography IOD of ``dciodvfy`` without error.

Images are drawn with the chest wall on the left and stored in the convention of
:data:`shared.synth.STORED_CHEST_WALL_SIDE`. Same seed, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final, Literal, get_args

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from scipy import ndimage

from shared import synth
from shared.synth import Finding, Laterality, StudyIdentity, SyntheticStudy, SyntheticView, View, study_identity

LesionKind = Literal[
    "cyst",
    "fibroadenoma",
    "probably_benign_mass",
    "irregular_mass",
    "spiculated_mass",
    "scattered_calcifications",
    "vascular_calcifications",
    "coarse_calcifications",
    "punctate_cluster",
    "pleomorphic_cluster",
    "fine_linear_calcifications",
]
LESION_KINDS: Final[tuple[str, ...]] = get_args(LesionKind)


@dataclass(frozen=True)
class LesionType:
    """What a kind of finding means: its BI-RADS category, whether it is malignant, mass or calcification."""

    birads: int
    malignant: bool
    family: Literal["mass", "calcifications"]


LESION_TYPES: Final[dict[str, LesionType]] = {
    "cyst": LesionType(2, False, "mass"),
    "fibroadenoma": LesionType(2, False, "mass"),
    "probably_benign_mass": LesionType(3, False, "mass"),
    "irregular_mass": LesionType(4, True, "mass"),
    "spiculated_mass": LesionType(5, True, "mass"),
    "scattered_calcifications": LesionType(2, False, "calcifications"),
    "vascular_calcifications": LesionType(2, False, "calcifications"),
    "coarse_calcifications": LesionType(2, False, "calcifications"),
    "punctate_cluster": LesionType(3, False, "calcifications"),
    "pleomorphic_cluster": LesionType(4, True, "calcifications"),
    "fine_linear_calcifications": LesionType(5, True, "calcifications"),
}
_BENIGN: Final[tuple[str, ...]] = tuple(k for k, t in LESION_TYPES.items() if not t.malignant)
_MALIGNANT: Final[tuple[str, ...]] = tuple(k for k, t in LESION_TYPES.items() if t.malignant)

#: Detector fields (rows x columns, mm): portrait, the chest wall along a long side.
DETECTORS: Final[dict[str, tuple[float, float]]] = {"18x24": (240.0, 180.0), "24x30": (300.0, 240.0)}
#: Linear attenuation (relative units per mm of compressed thickness) of fat, gland and calcium.
MU_FAT: Final[float] = 0.040
MU_GLAND: Final[float] = 0.062
MU_CALCIUM: Final[float] = 1.20
#: Exposure reaching the detector through air (photons per pixel at 0.1 mm); noise scales from it.
FLUX_AT_01MM: Final[float] = 20000.0
COARSE_MM: Final[float] = 0.4

Vendor = Literal["A", "B", "C"]
VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID", "TABLE", "NONE"]
VENDORS: Final[dict[str, str]] = {
    "A": "Sintetica Imaging A (fantoma)",
    "B": "SINTETICA MEDICAL B FANTOMA",
    "C": "Sintetica C (phantom)",
}


@dataclass(frozen=True)
class Lesion:
    """One finding of a breast, in breast coordinates shared by both views.

    ``depth`` runs from the chest wall (0) to the nipple (1); ``cc_offset`` and ``mlo_offset``
    (-1..1) place it across the breast in each view; ``size_mm`` is a mass's diameter or a
    calcification group's extent.
    """

    kind: str
    depth: float
    cc_offset: float
    mlo_offset: float
    size_mm: float
    seed: int

    @property
    def type(self) -> LesionType:
        """Category, malignancy and family of this kind."""
        return LESION_TYPES[self.kind]


@dataclass(frozen=True)
class BreastSpec:
    """The anatomy and findings of one breast."""

    laterality: Laterality
    dense_fraction: float
    depth_mm: float
    height_mm: float
    thickness_mm: float
    lesions: tuple[Lesion, ...] = ()

    @property
    def birads(self) -> int:
        """Worst category of its findings (1 without any)."""
        return max((lesion.type.birads for lesion in self.lesions), default=1)

    @property
    def malignant(self) -> bool:
        """Whether any finding is malignant."""
        return any(lesion.type.malignant for lesion in self.lesions)


@dataclass(frozen=True)
class Rendering:
    """How a study is written: intent, bits, photometric interpretation, window, vendor, markers."""

    for_processing: bool = False
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2"
    bits_stored: int = 12
    voi: VoiFunction = "LINEAR"
    window_shift: float = 0.0
    """Shift of the window centre, as a fraction of its width."""
    window_scale: float = 1.0
    tone_gamma: float = 1.0
    """The vendor's tone curve on the attenuation (For Presentation)."""
    edge_enhancement: float = 0.3
    """Amount of the vendor's unsharp masking (For Presentation)."""
    vendor: Vendor = "A"
    markers: bool = True
    spacing_mm: float = 0.1
    detector: str = "18x24"
    noise: float = 1.0
    """Multiplies the quantum noise (1: the nominal exposure)."""


@dataclass(frozen=True)
class CaseSpecV2:
    """Everything a labelled study of this generator is drawn from (seeded)."""

    seed: int
    right: BreastSpec
    left: BreastSpec
    rendering: Rendering

    def breast(self, laterality: str) -> BreastSpec:
        """The ``R`` or ``L`` breast."""
        return self.right if laterality == "R" else self.left


@dataclass
class DrawnView:
    """A view in attenuation, before rendering: chest wall on the left, everything in pixels."""

    attenuation: np.ndarray
    breast: np.ndarray
    pectoral: np.ndarray
    dense_fraction: float
    findings: list[Finding] = field(default_factory=list)


# --- sampling ------------------------------------------------------------------------------------


def _sample_lesion(rng: np.random.Generator, kind: str) -> Lesion:
    family = LESION_TYPES[kind].family
    if kind == "probably_benign_mass":
        size = rng.uniform(5.0, 11.0)
    elif family == "mass":
        size = rng.uniform(10.0, 28.0)
    elif kind == "pleomorphic_cluster":
        size = rng.uniform(8.0, 20.0)
    elif kind == "punctate_cluster":
        size = rng.uniform(5.0, 12.0)
    elif kind == "fine_linear_calcifications":
        size = rng.uniform(15.0, 35.0)
    else:
        size = rng.uniform(20.0, 50.0)
    return Lesion(
        kind=kind,
        depth=float(rng.uniform(0.2, 0.8)),
        cc_offset=float(rng.uniform(-0.6, 0.6)),
        mlo_offset=float(rng.uniform(-0.6, 0.6)),
        size_mm=float(size),
        seed=int(rng.integers(2**31)),
    )


def _sample_breast(rng: np.random.Generator, laterality: Laterality, dense: float, shape: tuple[float, float, float],
                   kinds: list[str]) -> BreastSpec:
    depth, height, thickness = shape
    jitter = rng.uniform(0.95, 1.05, 3)
    return BreastSpec(
        laterality=laterality,
        dense_fraction=float(np.clip(dense + rng.normal(0, 0.02), 0.02, 0.95)),
        depth_mm=float(depth * jitter[0]),
        height_mm=float(height * jitter[1]),
        thickness_mm=float(thickness * jitter[2]),
        lesions=tuple(_sample_lesion(rng, kind) for kind in kinds),
    )


def sample_rendering(rng: np.random.Generator, *, spacings: tuple[float, ...] = (0.085, 0.1)) -> Rendering:
    """A random rendering: a fifth For Processing, a third MONOCHROME1, 10 to 16 bits, windows, vendors,
    a pixel spacing of ``spacings`` and, for a fifth of the studies, the larger detector."""
    for_processing = bool(rng.random() < 0.2)
    voi: VoiFunction = str(rng.choice(["LINEAR", "LINEAR", "LINEAR_EXACT", "SIGMOID", "TABLE"]))  # type: ignore[assignment]
    if for_processing:
        voi = "NONE"  # the MG IOD allows a window only in For Presentation images
    return Rendering(
        for_processing=for_processing,
        photometric="MONOCHROME1" if for_processing or rng.random() < 0.3 else "MONOCHROME2",
        # Raw detector data keep 14 or 16 bits; processed images are also sent with 10 or 12.
        bits_stored=int(rng.choice([14, 16])) if for_processing else int(rng.choice([10, 12, 14, 16])),
        voi=voi,
        window_shift=float(rng.normal(0.0, 0.06)),
        window_scale=float(rng.uniform(0.8, 1.2)),
        tone_gamma=float(rng.uniform(0.7, 1.5)),
        edge_enhancement=float(rng.uniform(0.0, 0.6)),
        vendor=str(rng.choice(list(VENDORS))),  # type: ignore[arg-type]
        markers=bool(rng.random() < 0.8),
        spacing_mm=float(rng.choice(spacings)),
        detector="24x30" if rng.random() < 0.2 else "18x24",
        noise=float(rng.uniform(0.8, 1.3)),
    )


def sample_case(seed: int, *, rendering: Rendering | None = None, malignant_share: float = 0.4) -> CaseSpecV2:
    """Draw study ``seed``: density, breast shape, findings of each breast and the rendering.

    ``malignant_share`` of the studies have a malignant finding in one breast; as many again have
    benign findings only; the rest are normal. Any breast may also carry incidental benign findings.
    """
    rng = np.random.default_rng([seed, 0x2B2EA57])
    dense = float(rng.uniform(0.03, 0.85))
    shape = (float(rng.uniform(70, 130)), float(rng.uniform(130, 200)), float(rng.uniform(35, 70)))
    findings: dict[str, list[str]] = {"R": [], "L": []}
    side = "R" if rng.random() < 0.5 else "L"
    draw = rng.random()
    if draw < malignant_share:
        findings[side].append(str(rng.choice(_MALIGNANT)))
    elif draw < 2 * malignant_share:
        findings[side].append(str(rng.choice(_BENIGN)))
    for laterality in ("R", "L"):
        while rng.random() < 0.25 and len(findings[laterality]) < 3:
            findings[laterality].append(str(rng.choice(_BENIGN)))
    if rendering is None:
        rendering = sample_rendering(rng)
    return CaseSpecV2(
        seed=seed,
        right=_sample_breast(rng, "R", dense, shape, findings["R"]),
        left=_sample_breast(rng, "L", dense, shape, findings["L"]),
        rendering=rendering,
    )


# --- fields ------------------------------------------------------------------------------------


def power_law_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Gaussian noise with a power spectrum ∝ 1/f^beta, zero mean and unit variance (float32)."""
    rows, cols = shape
    fy = np.fft.fftfreq(rows)[:, None]
    fx = np.fft.rfftfreq(cols)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amplitude = f ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    spectrum = (rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape)) * amplitude
    field_ = np.fft.irfft2(spectrum, s=shape)
    field_ -= field_.mean()
    field_ /= max(float(field_.std()), 1e-12)
    return field_.astype(np.float32)


def _resize(field_: np.ndarray, shape: tuple[int, int], *, writable: bool = False) -> np.ndarray:
    """Bilinear resize of a float field to ``shape`` (rows, cols); read-only unless ``writable``."""
    image = Image.fromarray(np.ascontiguousarray(field_, dtype=np.float32), mode="F")
    resized = image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.float32) if writable else np.asarray(resized, dtype=np.float32)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class _Geometry:
    """The breast outline of one view on the coarse grid and its geometry in mm."""

    rows: int
    cols: int
    center_row: float
    depth: float
    half_height: float
    inside: np.ndarray
    distance: np.ndarray
    pectoral: np.ndarray
    pectoral_edge: np.ndarray


def _outline(rng: np.random.Generator, breast: BreastSpec, view: View, rows: int, cols: int, cell: float) -> _Geometry:
    """Breast and pectoral regions on the coarse grid (cells of ``cell`` mm), chest wall at column 0."""
    height_mm, width_mm = rows * cell, cols * cell
    depth = min(breast.depth_mm * (1.1 if view == "MLO" else 1.0), 0.85 * width_mm)
    half = min(breast.height_mm / 2 * (1.15 if view == "MLO" else 1.0), 0.47 * height_mm)
    center = height_mm * (rng.uniform(0.46, 0.54) if view == "CC" else rng.uniform(0.52, 0.6))
    y = (np.arange(rows, dtype=np.float32)[:, None] + 0.5) * cell
    x = (np.arange(cols, dtype=np.float32)[None, :] + 0.5) * cell
    theta = np.arctan2((y - center) / half, x / depth)
    wobble = 1.0 + sum(
        rng.uniform(0.0, 0.04) / k * np.sin(k * theta + rng.uniform(0, 2 * np.pi)) for k in range(2, 6)
    )
    exponent = rng.uniform(1.8, 2.4)
    radius = (np.abs(x / depth) ** exponent + np.abs((y - center) / half) ** 2) ** (1.0 / 2.0)
    inside = radius < wobble
    pectoral = np.zeros((rows, cols), dtype=bool)
    edge = np.zeros(rows, dtype=np.float32)
    if view == "MLO":
        # The muscle's edge runs from the top edge down the chest wall and bows (convex or concave).
        top = rng.uniform(0.3, 0.55) * depth
        length = min(height_mm * rng.uniform(0.55, 0.8), height_mm)
        bow = rng.uniform(0.7, 1.35)
        t = np.clip(1.0 - y[:, 0] / length, 0.0, 1.0)
        edge = (top * t**bow).astype(np.float32)
        pectoral = x < edge[:, None]
        # The axillary tail joins the breast to the muscle up to the top edge.
        axilla = (x < edge[:, None] + rng.uniform(25, 45)) & (y < center)
        inside = inside | pectoral | axilla
    # Round the outline (the axillary tail joins smoothly), keeping the chest wall straight.
    padded = np.pad(inside.astype(np.float32), ((0, 0), (20, 0)), mode="edge")
    inside = ndimage.gaussian_filter(padded, 5.0 / cell)[:, 20:] > 0.5
    if view == "MLO":
        inside |= pectoral
    nipple = ((y - center) ** 2 + (x - depth) ** 2) < rng.uniform(3.0, 5.0) ** 2
    inside |= nipple
    distance = ndimage.distance_transform_edt(np.pad(inside, ((1, 1), (0, 1)))[1:-1, :-1]).astype(np.float32) * cell
    return _Geometry(rows, cols, center, depth, half, inside, distance, pectoral, edge)


def _line_field(rng: np.random.Generator, shape: tuple[int, int], beta: float, width: float) -> np.ndarray:
    """Curvy thin lines: the zero level set of smooth noise, as a 0..1 ridge ``width`` (in std) wide."""
    noise = power_law_noise(rng, shape, beta)
    return np.exp(-(noise / width) ** 2).astype(np.float32)


def _vessels(rng: np.random.Generator, geo: _Geometry, cell: float) -> np.ndarray:
    """A few tortuous vessels running from the chest wall towards the nipple (coarse grid, 0..1)."""
    canvas = Image.new("F", (geo.cols, geo.rows), 0.0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 6))):
        row = geo.center_row + rng.uniform(-0.8, 0.8) * geo.half_height
        points = []
        x, heading = 0.0, rng.normal(0.0, 0.3)
        while x < geo.depth * rng.uniform(0.6, 0.95):
            points.append((x / cell, row / cell))
            heading += rng.normal(0.0, 0.25)
            heading = float(np.clip(heading, -0.9, 0.9))
            x += 4.0 * np.cos(heading)
            row += 4.0 * np.sin(heading)
        width = max(1, round(rng.uniform(0.8, 2.5) / cell))
        draw.line(points, fill=1.0, width=width, joint="curve")
    return ndimage.gaussian_filter(np.asarray(canvas, dtype=np.float32), 0.8)


def _gland(rng: np.random.Generator, breast: BreastSpec, geo: _Geometry, cell: float) -> tuple[np.ndarray, float]:
    """Fibroglandular fraction 0..1 on the coarse grid, and the share of the breast it makes dense."""
    rows, cols = geo.rows, geo.cols
    y = (np.arange(rows, dtype=np.float32)[:, None] + 0.5) * cell
    x = (np.arange(cols, dtype=np.float32)[None, :] + 0.5) * cell
    # Gland concentrates in the middle of the breast, behind the nipple, away from the skin.
    envelope = np.exp(-(((x - 0.4 * geo.depth) / (0.55 * geo.depth)) ** 2) - ((y - geo.center_row) / (0.85 * geo.half_height)) ** 2)
    texture = power_law_noise(rng, (rows, cols), float(rng.uniform(2.8, 3.4)))
    fine = power_law_noise(rng, (rows, cols), 2.0)
    score = texture + 0.35 * fine + 2.2 * envelope
    tissue = geo.inside & ~geo.pectoral & (geo.distance > 4.0)
    if not tissue.any():
        return np.zeros((rows, cols), np.float32), 0.0
    level = float(np.quantile(score[tissue], 1.0 - breast.dense_fraction))
    # A continuous projected fraction: dense where the score passes the level, with texture inside.
    gland = np.clip(0.5 + (score - level) / 2.5, 0.0, 1.0) ** 0.8
    gland *= 0.85 + 0.15 * np.clip(fine, -2.0, 2.0) / 2.0
    gland = ndimage.gaussian_filter((gland * tissue).astype(np.float32), 0.6)
    fraction = float((gland[tissue] > 0.5).mean())
    return gland, fraction


def _thickness(breast: BreastSpec, geo: _Geometry, rng: np.random.Generator) -> np.ndarray:
    """Compressed thickness (mm): constant under the paddle, falling to zero at the skin."""
    falloff = rng.uniform(12.0, 25.0)
    ramp = np.clip(geo.distance / falloff, 0.0, 1.0)
    return (breast.thickness_mm * np.sqrt(1.0 - (1.0 - ramp) ** 2) * geo.inside).astype(np.float32)


# --- findings ---------------------------------------------------------------------------------


def _lesion_center(lesion: Lesion, view: View, geo: _Geometry, cell: float) -> tuple[float, float]:
    """Where a lesion projects in a view (row, col in mm)."""
    offset = lesion.cc_offset if view == "CC" else lesion.mlo_offset
    col = max(lesion.depth * geo.depth, (geo.pectoral_edge.max() if view == "MLO" else 0.0) + 10.0)
    width = geo.half_height * np.sqrt(max(1.0 - (col / geo.depth) ** 2, 0.05))
    row = geo.center_row + offset * 0.8 * width
    return float(row), float(min(col, 0.9 * geo.depth))


def _mass_profile(rng: np.random.Generator, kind: str, radius: float, rr: np.ndarray, cc: np.ndarray, px: float) -> np.ndarray:
    """Projected mass density 0..1 in a patch (offsets ``rr``, ``cc`` in pixels; ``radius`` in pixels)."""
    angle = rng.uniform(0, np.pi)
    aspect = rng.uniform(1.0, 1.2) if kind == "cyst" else rng.uniform(1.0, 1.6)
    u = rr * np.cos(angle) + cc * np.sin(angle)
    v = -rr * np.sin(angle) + cc * np.cos(angle)
    rho = np.sqrt((u / aspect) ** 2 + (v * aspect) ** 2 / aspect**2 * aspect) + 1e-6
    theta = np.arctan2(v, u)
    if kind in ("cyst", "fibroadenoma", "probably_benign_mass"):
        lobes = 0.0 if kind == "cyst" else rng.uniform(0.0, 0.08)
        edge = radius * (1.0 + lobes * np.sin(rng.integers(2, 4) * theta + rng.uniform(0, 6.28)))
        margin = max(0.6, 0.3 / px)  # a sharp, circumscribed margin (0.3 mm)
        core = np.clip((edge - rho) / margin, 0.0, 1.0)
    else:
        wobble = sum(rng.uniform(0.05, 0.18) / (k / 3) * np.sin(k * theta + rng.uniform(0, 6.28)) for k in range(3, 12))
        edge = radius * (1.0 + wobble)
        margin = max(1.0, rng.uniform(0.08, 0.25) * radius)  # indistinct, microlobulated
        core = np.clip((edge - rho) / margin + 0.3, 0.0, 1.0)
    # A lump is thicker in its middle: projected density grows towards the centre.
    profile = core * np.sqrt(np.clip(1.0 - (rho / (1.3 * radius)) ** 2, 0.15, 1.0))
    if kind == "spiculated_mass":
        width = max(0.6, rng.uniform(0.25, 0.6) / px)
        for _ in range(int(rng.integers(10, 24))):
            direction = rng.uniform(0, 2 * np.pi)
            length = radius * rng.uniform(1.5, 3.0)
            along = rr * np.sin(direction) + cc * np.cos(direction)
            across = np.abs(-rr * np.cos(direction) + cc * np.sin(direction))
            taper = np.clip(1.0 - along / length, 0.0, 1.0)
            spicule = np.clip(1.0 - across / (width * (0.4 + taper)), 0.0, 1.0) * (along > 0) * taper
            profile = np.maximum(profile, 0.8 * spicule)
    return profile.astype(np.float32)


def _calcification_spots(rng: np.random.Generator, kind: str, extent: float, px: float) -> list[tuple[float, float, float, bool]]:
    """Calcifications of a group: (row, col offsets in px, diameter in mm, irregular)."""
    spots: list[tuple[float, float, float, bool]] = []
    half = extent / 2.0 / px
    if kind == "pleomorphic_cluster":
        for _ in range(int(rng.integers(15, 50))):
            r = half * np.sqrt(rng.uniform(0, 1))
            a = rng.uniform(0, 2 * np.pi)
            spots.append((r * np.sin(a), r * np.cos(a), float(rng.uniform(0.2, 0.7)), True))
    elif kind == "punctate_cluster":
        for _ in range(int(rng.integers(4, 10))):
            r = half * np.sqrt(rng.uniform(0, 1))
            a = rng.uniform(0, 2 * np.pi)
            spots.append((r * np.sin(a), r * np.cos(a), float(rng.uniform(0.2, 0.45)), False))
    elif kind == "fine_linear_calcifications":
        for _ in range(int(rng.integers(3, 6))):
            a = rng.uniform(0, 2 * np.pi)
            length = half * rng.uniform(0.6, 1.0)
            start = rng.uniform(-0.2, 0.2, 2) * half
            for t in np.linspace(0.0, 1.0, int(rng.integers(8, 17))):
                jitter = rng.normal(0, 0.15 / px, 2)
                spots.append((start[0] + t * length * np.sin(a) + jitter[0], start[1] + t * length * np.cos(a) + jitter[1],
                              float(rng.uniform(0.15, 0.5)), True))
    elif kind == "vascular_calcifications":
        a = rng.uniform(-0.4, 0.4)
        for t in np.linspace(-1.0, 1.0, int(rng.integers(10, 25))):
            for side in (-1, 1):
                if rng.random() < 0.7:
                    along = t * half
                    spots.append((along * np.sin(a) + side * 0.6 / px * np.cos(a), along * np.cos(a) - side * 0.6 / px * np.sin(a),
                                  float(rng.uniform(0.3, 0.7)), False))
    elif kind == "coarse_calcifications":
        for _ in range(int(rng.integers(1, 4))):
            r = half * np.sqrt(rng.uniform(0, 1))
            a = rng.uniform(0, 2 * np.pi)
            spots.append((r * np.sin(a), r * np.cos(a), float(rng.uniform(0.8, 1.5)), False))
    else:  # scattered round, benign
        for _ in range(int(rng.integers(5, 18))):
            r = half * np.sqrt(rng.uniform(0, 1))
            a = rng.uniform(0, 2 * np.pi)
            spots.append((r * np.sin(a), r * np.cos(a), float(rng.uniform(0.4, 1.0)), False))
    return spots


def _paint_calcifications(rng: np.random.Generator, out: np.ndarray, center: tuple[float, float], kind: str,
                          extent: float, px: float) -> None:
    """Add calcium attenuation (∝ its thickness) for each calcification of the group, in place."""
    rows, cols = out.shape
    for dr, dc, diameter, irregular in _calcification_spots(rng, kind, extent, px):
        cr, cc = center[0] + dr, center[1] + dc
        radius = diameter / 2.0 / px
        reach = int(np.ceil(radius * 2.0)) + 2
        r0, r1 = int(max(0, cr - reach)), int(min(rows, cr + reach + 1))
        c0, c1 = int(max(0, cc - reach)), int(min(cols, cc + reach + 1))
        if r0 >= r1 or c0 >= c1:
            continue
        yy = np.arange(r0, r1, dtype=np.float32)[:, None] - cr
        xx = np.arange(c0, c1, dtype=np.float32)[None, :] - cc
        if irregular:  # pleomorphic: elongated, angular
            a = rng.uniform(0, np.pi)
            stretch = rng.uniform(1.0, 2.5)
            u = (yy * np.cos(a) + xx * np.sin(a)) / stretch
            v = -yy * np.sin(a) + xx * np.cos(a)
            rho = np.maximum(np.abs(u), np.abs(v)) * rng.uniform(0.8, 1.0) + 0.3 * np.sqrt(u * u + v * v)
        else:
            rho = np.sqrt(yy * yy + xx * xx)
        chord = np.sqrt(np.clip(1.0 - (rho / max(radius, 0.5)) ** 2, 0.0, 1.0)) * diameter  # mm of calcium
        out[r0:r1, c0:c1] += MU_CALCIUM * chord * rng.uniform(0.6, 1.0)


# --- one view ----------------------------------------------------------------------------------


def draw_view(case: CaseSpecV2, laterality: Laterality, view: View) -> DrawnView:
    """Draw one view of ``case`` in attenuation (chest wall on the left), with its ground truth."""
    breast = case.breast(laterality)
    render = case.rendering
    px = render.spacing_mm
    height_mm, width_mm = DETECTORS[render.detector]
    rows, cols = int(round(height_mm / px)), int(round(width_mm / px))
    cell = COARSE_MM
    crows, ccols = int(round(height_mm / cell)), int(round(width_mm / cell))
    rng = np.random.default_rng([case.seed, ord(laterality), 1 if view == "MLO" else 0, 0x5EED2])

    geo = _outline(rng, breast, view, crows, ccols, cell)
    gland, fraction = _gland(rng, breast, geo, cell)
    thickness = _thickness(breast, geo, rng)
    fat_band = (1.0 - gland) * geo.inside * np.clip(geo.distance / 30.0, 0.0, 1.0)
    ligaments = _line_field(rng, (crows, ccols), 2.6, 0.05) * fat_band
    vessels = _vessels(rng, geo, cell) * geo.inside
    # Attenuation (log of the exposure ratio): thickness x composition, plus thin structures.
    coarse = thickness * (MU_FAT + (MU_GLAND - MU_FAT) * gland)
    coarse += (MU_GLAND - MU_FAT) * breast.thickness_mm * (0.05 * ligaments + 0.05 * vessels)
    skin = (geo.distance > 0) & (geo.distance < 1.6) & geo.inside
    coarse += np.where(skin, 0.5 * MU_GLAND * 4.0, 0.0).astype(np.float32)
    if view == "MLO":
        muscle = 1.0 + 0.025 * power_law_noise(rng, (crows, ccols), 3.0)
        muscle_thickness = np.clip(geo.distance / 8.0, 0.3, 1.0) * breast.thickness_mm
        coarse = np.where(geo.pectoral, muscle_thickness * MU_GLAND * rng.uniform(0.97, 1.05) * muscle, coarse)
    attenuation = _resize(coarse, (rows, cols), writable=True)
    inside_full = _resize(geo.distance, (rows, cols)) > 0.5 * cell
    pectoral_full = np.zeros((rows, cols), bool)
    if view == "MLO":
        xs = (np.arange(cols, dtype=np.float32)[None, :] + 0.5) * px
        edge = np.interp((np.arange(rows) + 0.5) * px, (np.arange(crows) + 0.5) * cell, geo.pectoral_edge)
        pectoral_full = (xs < edge[:, None]) & inside_full

    findings: list[Finding] = []
    gland_full: np.ndarray | None = None
    for lesion in breast.lesions:
        lrng = np.random.default_rng([lesion.seed, 1 if view == "MLO" else 0])
        row_mm, col_mm = _lesion_center(lesion, view, geo, cell)
        center = (row_mm / px, col_mm / px)
        kind = lesion.kind
        if lesion.type.family == "mass":
            radius = lesion.size_mm / 2.0 / px
            reach = int(radius * (3.2 if kind == "spiculated_mass" else 1.8)) + 4
            r0, r1 = int(max(0, center[0] - reach)), int(min(rows, center[0] + reach + 1))
            c0, c1 = int(max(0, center[1] - reach)), int(min(cols, center[1] + reach + 1))
            rr = np.arange(r0, r1, dtype=np.float32)[:, None] - center[0]
            cc = np.arange(c0, c1, dtype=np.float32)[None, :] - center[1]
            profile = _mass_profile(lrng, kind, radius, rr, cc, px)
            # Same attenuation as gland: where the breast is already dense the mass adds almost nothing.
            if gland_full is None:
                gland_full = _resize(gland, (rows, cols))
            local_gland = gland_full[r0:r1, c0:c1]
            # Its projected thickness over the breast's, at an attenuation as high as gland's or a little higher.
            share = float(np.clip(lesion.size_mm / breast.thickness_mm * lrng.uniform(1.3, 2.0), 0.35, 1.0))
            strength = share * (MU_GLAND - MU_FAT) * breast.thickness_mm
            attenuation[r0:r1, c0:c1] += strength * profile * (1.0 - 0.5 * local_gland) * inside_full[r0:r1, c0:c1]
        else:
            radius = lesion.size_mm / 2.0 / px
            _paint_calcifications(lrng, attenuation, center, kind, lesion.size_mm, px)
        findings.append(
            Finding(
                lesion.type.family,  # type: ignore[arg-type]
                (int(round(center[0])), int(round(center[1]))),
                int(round(radius)),
                lesion=kind,
                malignant=lesion.type.malignant,
                birads=lesion.type.birads,
            )
        )
    attenuation *= inside_full
    return DrawnView(attenuation, inside_full, pectoral_full, fraction, findings)


# --- rendering ---------------------------------------------------------------------------------


def _binomial(image: np.ndarray) -> np.ndarray:
    """3 x 3 binomial blur (1-2-1 on each axis), edges replicated: the detector's correlation."""
    weights = np.array([0.25, 0.5, 0.25], dtype=np.float32)
    return ndimage.correlate1d(ndimage.correlate1d(image, weights, axis=0, mode="nearest"), weights, axis=1, mode="nearest")


def _flux(render: Rendering) -> float:
    return FLUX_AT_01MM * (render.spacing_mm / 0.1) ** 2 / render.noise**2


def _exposure(rng: np.random.Generator, attenuation: np.ndarray, render: Rendering) -> np.ndarray:
    """Detector signal (photons per pixel) with quantum noise, correlated by the detector."""
    mean = np.float32(_flux(render)) * np.exp(-attenuation, dtype=np.float32)
    noise = _binomial(rng.standard_normal(attenuation.shape, dtype=np.float32)) * np.float32(1.0 / 0.375)
    noise *= np.sqrt(mean)
    mean += noise
    return np.maximum(mean, np.float32(1.0))


def _coarse_blur(image: np.ndarray, sigma_px: float, factor: int = 8) -> np.ndarray:
    """A wide Gaussian blur computed on an image ``factor`` times smaller (edge enhancement needs no more)."""
    rows, cols = image.shape
    small = np.asarray(Image.fromarray(image, mode="F").reduce(factor), dtype=np.float32)
    small = ndimage.gaussian_filter(small, max(sigma_px / factor, 0.5))
    return _resize(small, (rows, cols))


def _presentation(log_signal: np.ndarray, breast: np.ndarray, render: Rendering) -> np.ndarray:
    """A vendor's processing of the log signal: tone curve and edge enhancement, 0..1 (breast bright)."""
    inside = log_signal[::8, ::8][breast[::8, ::8]]
    lo, hi = (np.percentile(inside, (0.5, 99.9)) if inside.size else (0.0, 1.0))
    x = np.clip((log_signal - np.float32(lo)) * np.float32(1.0 / max(hi - lo, 1e-6)), 0.0, 1.2)
    if render.edge_enhancement > 0:
        x += np.float32(render.edge_enhancement) * (x - _coarse_blur(x, 4.0 / render.spacing_mm))
    np.clip(x, 0.0, 1.0, out=x)
    x **= np.float32(render.tone_gamma)
    x = np.float32(0.08) + np.float32(0.9) * x
    x[~breast] = np.float32(0.02)
    return x


def _markers(pixels: np.ndarray, breast: np.ndarray, laterality: str, view: str, value: int, spacing: float,
             label: str) -> None:
    """Burn the laterality marker and a label into the air, away from the breast, in place (drawn frame:
    text that the stored image will mirror is drawn mirrored, so that it reads right once stored)."""
    mirrored = synth.STORED_CHEST_WALL_SIDE[laterality] == "right"
    rows, cols = pixels.shape
    size = max(10, int(round(8.0 / spacing)))
    font = ImageFont.load_default(size=size)
    for text, row in ((f"{laterality}{view}", int(0.05 * rows)), (label, int(0.92 * rows))):
        canvas = Image.new("L", (cols, rows // 10 + size), 0)
        ImageDraw.Draw(canvas).text((0, 0), text, fill=255, font=font)
        stamp = np.asarray(canvas) > 127
        stamp_rows, stamp_cols = np.nonzero(stamp)
        if stamp_rows.size == 0:
            continue
        h, w = stamp_rows.max() + 1, stamp_cols.max() + 1
        # The far side from the chest wall, where the air is (drawn frame: chest wall on the left).
        c0 = cols - w - int(0.04 * cols)
        r0 = min(max(0, row), rows - h)
        patch = stamp[:h, :w][:, ::-1] if mirrored else stamp[:h, :w]
        region = (slice(r0, r0 + h), slice(c0, c0 + w))
        if breast[region].any():
            continue
        pixels[region][patch] = value


def render_view(drawn: DrawnView, case: CaseSpecV2, laterality: Laterality, view: View) -> tuple[np.ndarray, dict]:
    """Stored pixel values (uint16, chest wall on the left) and the tags that describe them."""
    render = case.rendering
    rng = np.random.default_rng([case.seed, ord(laterality), 1 if view == "MLO" else 0, 0xE7905])
    top = (1 << render.bits_stored) - 1
    signal = _exposure(rng, drawn.attenuation, render)
    flux = _flux(render)
    if render.for_processing:
        # Raw, linear in exposure: the breast has the low values (shown white as MONOCHROME1).
        values = np.clip(signal / (flux * 1.05), 0.0, 1.0)
        if render.photometric == "MONOCHROME2":
            values = 1.0 - values
    else:
        log_signal = np.log(np.float32(flux) / signal)
        values = _presentation(log_signal, drawn.breast, render)
        if render.photometric == "MONOCHROME1":
            values = 1.0 - values
    pixels = np.rint(values * top).astype(np.uint16)
    tags: dict = {"burned_in": False}
    if render.markers:
        bright = 0 if render.photometric == "MONOCHROME1" else top
        _markers(pixels, drawn.breast, laterality, view, bright, render.spacing_mm, "MDD FANTOMA")
        tags["burned_in"] = True
    tags["window"] = _window(pixels, drawn.breast, render, top)
    return pixels, tags


def _window(pixels: np.ndarray, breast: np.ndarray, render: Rendering, top: int) -> tuple[float, float] | None:
    """Window centre and width around the breast's values, shifted and scaled as the rendering says."""
    if render.voi == "NONE":
        return None
    inside = pixels[::8, ::8][breast[::8, ::8]]
    lo, hi = (np.percentile(inside, (0.5, 99.8)) if inside.size else (0.0, float(top)))
    width = max(float(hi - lo) * 1.1 * render.window_scale, 16.0)
    center = float(lo + hi) / 2.0 + render.window_shift * width
    return round(center, 1), round(width, 1)


# --- DICOM -------------------------------------------------------------------------------------


def _voi_table(center: float, width: float, top: int) -> Dataset:
    """A VOI LUT Sequence item equivalent to a sigmoid window (vendors that ship tables)."""
    first = int(max(0, center - width))
    last = int(min(top, center + width))
    entries = last - first + 1
    x = np.arange(first, last + 1, dtype=np.float64)
    y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    item = Dataset()
    item.LUTDescriptor = [entries if entries < 65536 else 0, first, 16]
    item.LUTExplanation = "SINTETICA TABLA"
    item.LUTData = np.rint(y * 65535).astype(np.uint16).tolist()
    item["LUTData"].VR = "US"
    return item


def _apply_tags(ds: Dataset, case: CaseSpecV2, laterality: str, view: str, tags: dict, rows: int, cols: int) -> None:
    """Rendering, vendor style and geometry tags of a view (after the common ones of shared.synth)."""
    render = case.rendering
    top = (1 << render.bits_stored) - 1
    if render.for_processing:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = synth.MG_FOR_PROCESSING
        ds.PresentationIntentType = "FOR PROCESSING"
        ds.PixelIntensityRelationship = "LIN"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "", "RAW"] if render.vendor != "C" else ["ORIGINAL", "PRIMARY"]
    synth.add_mammography_modules(
        ds, render.photometric, detector_type="SCINTILLATOR" if render.vendor == "B" else "DIRECT",
        burned_in=bool(tags["burned_in"]),
    )
    if render.for_processing:
        ds.PixelIntensityRelationshipSign = 1 if render.photometric == "MONOCHROME1" else -1
    ds.BitsStored, ds.HighBit = render.bits_stored, render.bits_stored - 1
    ds.Manufacturer = VENDORS[render.vendor]
    ds.ManufacturerModelName = f"FANTOMA-{render.vendor}"
    ds.DetectorID = f"SINT-{render.detector}"
    spacing = [f"{render.spacing_mm:.6g}", f"{render.spacing_mm:.6g}"]
    ds.ImagerPixelSpacing = spacing
    if render.vendor == "B":
        # Vendor B gives only the detector spacing and the magnification at the breast.
        if "PixelSpacing" in ds:
            del ds.PixelSpacing
        ds.EstimatedRadiographicMagnificationFactor = "1.08"
    else:
        ds.PixelSpacing = spacing
        if render.vendor == "C":
            ds.PixelSpacingCalibrationType = "GEOMETRY"
            ds.PixelSpacingCalibrationDescription = "Geometria del fantoma / phantom geometry"
    if render.vendor == "C":
        ds.ViewPosition = view  # and an older View Code Sequence meaning
    for keyword in ("WindowCenter", "WindowWidth", "VOILUTFunction", "WindowCenterWidthExplanation", "VOILUTSequence"):
        if keyword in ds:
            delattr(ds, keyword)
    window = tags["window"] if not render.for_processing else None
    if window is not None:
        center, width = window
        # LUT Data is US: a table longer than 32,767 entries cannot be written explicitly (vendors window instead).
        if render.voi == "TABLE" and 2 * width < 32767:
            ds.VOILUTSequence = [_voi_table(center, width, top)]
        else:
            if render.vendor == "B":  # two windows: the standard one and a softer one
                ds.WindowCenter = [f"{center:.1f}", f"{center:.1f}"]
                ds.WindowWidth = [f"{width:.1f}", f"{width * 1.3:.1f}"]
                ds.WindowCenterWidthExplanation = ["ESTANDAR", "SUAVE"]
            else:
                ds.WindowCenter, ds.WindowWidth = f"{center:.1f}", f"{width:.1f}"
            ds.VOILUTFunction = render.voi if render.voi != "TABLE" else "SIGMOID"
    ds.Rows, ds.Columns = rows, cols
    ds.SeriesDescription = f"{laterality} {view}"
    ds.BreastImplantPresent = "NO"


def make_view(
    case: CaseSpecV2, laterality: Laterality, view: View, study: StudyIdentity | None = None,
    *, drawn: DrawnView | None = None,
) -> SyntheticView:
    """Draw, render and write one view of ``case`` (a Part 10 dataset with its ground truth).

    ``drawn`` reuses a view already drawn (:func:`draw_view`) and only renders it again, as the
    robustness evaluation does for each rendering of the same anatomy.
    """
    identity = study if study is not None else study_identity(case.seed)
    drawn = drawn if drawn is not None else draw_view(case, laterality, view)
    pixels, tags = render_view(drawn, case, laterality, view)
    rows, cols = pixels.shape
    stored = synth.finish_view(
        identity, laterality, view, pixels, drawn.breast, drawn.pectoral, drawn.findings,
        case.rendering.photometric, invert=False,
    )
    _apply_tags(stored.dataset, case, laterality, view, tags, rows, cols)
    return stored


def make_study(case: CaseSpecV2 | int, *, hospital_id: str = "HOSP-DEMO", patient_id: str | None = None) -> SyntheticStudy:
    """The four screening views of a case (or of the case :func:`sample_case` draws for a seed)."""
    spec = case if isinstance(case, CaseSpecV2) else sample_case(int(case))
    identity = study_identity(spec.seed, hospital_id=hospital_id, patient_id=patient_id)
    views = [make_view(spec, lat, vw, identity) for lat, vw in synth.STANDARD_VIEWS]
    return SyntheticStudy(
        study_uid=identity.study_uid,
        accession_number=identity.accession_number,
        patient_id=identity.patient_id,
        hospital_id=hospital_id,
        views=views,
    )


def screening_case(
    seed: int,
    *,
    finding: Literal["mass", "calcifications"] | None = None,
    finding_laterality: Laterality = "L",
    dense_fraction: float = 0.3,
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2",
    spacing_mm: float = 0.1,
) -> CaseSpecV2:
    """A plain screening study for demonstrations and end-to-end tests: one clear finding or none.

    A ``mass`` is a spiculated mass of 16 to 22 mm, ``calcifications`` a cluster of fine pleomorphic
    calcifications; the rendering is For Presentation, 12 bits, a linear window, no marker.
    """
    rng = np.random.default_rng([seed, 0x5C12EE])
    drawn = sample_case(seed, malignant_share=0.0)
    shape = (float(rng.uniform(90, 120)), float(rng.uniform(150, 190)), float(rng.uniform(40, 55)))
    right = _sample_breast(rng, "R", dense_fraction, shape, [])
    left = _sample_breast(rng, "L", dense_fraction, shape, [])
    case = CaseSpecV2(
        seed=seed,
        right=right,
        left=left,
        rendering=Rendering(photometric=photometric, spacing_mm=spacing_mm, markers=False, edge_enhancement=0.3,
                            tone_gamma=1.0, voi="LINEAR", vendor=drawn.rendering.vendor),
    )
    if finding == "mass":
        return with_finding(case, finding_laterality, "spiculated_mass", depth=0.55, cc_offset=0.35, mlo_offset=-0.3,
                            size_mm=float(rng.uniform(16.0, 22.0)))
    if finding == "calcifications":
        return with_finding(case, finding_laterality, "pleomorphic_cluster", depth=0.55, cc_offset=0.35,
                            mlo_offset=-0.3, size_mm=float(rng.uniform(8.0, 12.0)))
    return case


def with_finding(case: CaseSpecV2, laterality: Laterality, kind: str, **where: float) -> CaseSpecV2:
    """``case`` with one more finding of ``kind`` in one breast (placed by ``where``: depth, offsets, size)."""
    rng = np.random.default_rng([case.seed, ord(laterality), LESION_KINDS.index(kind)])
    lesion = replace(_sample_lesion(rng, kind), **where)  # type: ignore[arg-type]
    breast = case.breast(laterality)
    updated = replace(breast, lesions=(*breast.lesions, lesion))
    return replace(case, right=updated) if laterality == "R" else replace(case, left=updated)


def without_findings(case: CaseSpecV2) -> CaseSpecV2:
    """``case`` with no finding in either breast."""
    return replace(case, right=replace(case.right, lesions=()), left=replace(case.left, lesions=()))


__all__ = [
    "BreastSpec",
    "CaseSpecV2",
    "DETECTORS",
    "DrawnView",
    "LESION_KINDS",
    "LESION_TYPES",
    "Lesion",
    "LesionType",
    "Rendering",
    "VENDORS",
    "draw_view",
    "make_study",
    "make_view",
    "power_law_noise",
    "render_view",
    "sample_case",
    "sample_rendering",
    "screening_case",
    "with_finding",
    "without_findings",
]
