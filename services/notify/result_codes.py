"""The words and codes the results objects use: BI-RADS, density, lights and the model's standing.

Standard codes wherever DICOM has one (CID 6026 BI-RADS assessment, CID 6000 breast composition,
CID 7162 Algorithm Family "Artificial Intelligence"). What no standard code says — that the model is
a demonstration trained on synthetic images, not for clinical use and not clinically validated, and
the two traffic lights — is coded in the project's own scheme ``99MDD``, declared in every object
that uses it with its Coding Scheme UID, so that a RIS or a reading workstation can act on the code
instead of parsing text.
"""

from __future__ import annotations

from typing import Final

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.coding import Code

from shared.dicom_uids import PROJECT_UID_ROOT
from shared.events import StudyInferred

RESULTS_MANUFACTURER: Final[str] = "Mexican Deep DICOM"

MDD_SCHEME: Final[str] = "99MDD"
MDD_SCHEME_UID: Final[str] = f"{PROJECT_UID_ROOT}.3.1"


def mdd_coding_scheme() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification item that declares ``99MDD`` (a new item each call: datasets own their items)."""
    item = CodingSchemeIdentificationItem(
        designator=MDD_SCHEME, name="Mexican Deep DICOM local codes", responsible_organization=RESULTS_MANUFACTURER
    )
    item.CodingSchemeUID = MDD_SCHEME_UID  # highdicom writes a UID only for registered schemes; ours has one too
    return item


def _mdd(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, MDD_SCHEME, meaning)


def coded(code: Code) -> hd.sr.CodedConcept:
    """A pydicom code as a highdicom concept, its meaning without the zero-width spaces pydicom keeps."""
    return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning.replace("\u200b", ""))


# Concept names (questions) and values (answers) of the project's statements.
INTENDED_USE = _mdd("MDD0001", "Uso previsto / intended use")
DEMONSTRATION_ONLY = _mdd("MDD0002", "Demostración, sin uso clínico / demonstration, no clinical use")
TRAINING_DATA = _mdd("MDD0003", "Datos de entrenamiento / training data")
SYNTHETIC_IMAGES = _mdd("MDD0004", "Fantomas sintéticos generados / generated synthetic phantoms")
NO_TRAINING = _mdd("MDD0005", "Sin entrenar (pesos aleatorios) / untrained (random weights)")
OTHER_TRAINING_DATA = _mdd("MDD0006", "Otros datos, ver parámetros / other data, see parameters")
CLINICAL_VALIDATION = _mdd("MDD0007", "Validación clínica / clinical validation")
NOT_CLINICALLY_VALIDATED = _mdd("MDD0008", "No validado clínicamente / not clinically validated")
TRIAGE_LIGHT = _mdd("MDD0010", "Semáforo de triaje / triage light")
STATUS_LIGHT = _mdd("MDD0011", "Semáforo de estado / status light")
LIGHT_CODES: Final[dict[str, hd.sr.CodedConcept]] = {
    "RED": _mdd("MDD0012", "ROJO, sospechoso / RED, suspicious"),
    "YELLOW": _mdd("MDD0013", "AMARILLO, indeterminado / YELLOW, indeterminate"),
    "GREEN": _mdd("MDD0014", "VERDE, baja sospecha / GREEN, low suspicion"),
}
RESULTS_AVAILABLE = _mdd("MDD0015", "VERDE, resultados disponibles / GREEN, results available")
TRIAGE_REASON = _mdd("MDD0016", "Motivo del semáforo / triage reason")
DISCLAIMER = _mdd("MDD0017", "Aviso / disclaimer")
#: CID 7162 value for TID 4019 Algorithm Family.
ARTIFICIAL_INTELLIGENCE = hd.sr.CodedConcept("123110", "DCM", "Artificial Intelligence")

#: BI-RADS category -> CID 6026 Mammography Assessment.
BIRADS_CODES: Final[dict[int, hd.sr.CodedConcept]] = {
    0: hd.sr.CodedConcept("397138000", "SCT", "BI-RADS 0 - Need additional imaging evaluation"),
    1: hd.sr.CodedConcept("397140005", "SCT", "BI-RADS 1 - Negative"),
    2: hd.sr.CodedConcept("397141009", "SCT", "BI-RADS 2 - Benign finding"),
    3: hd.sr.CodedConcept("397143007", "SCT", "BI-RADS 3 - Probably benign finding"),
    4: hd.sr.CodedConcept("397144001", "SCT", "BI-RADS 4 - Suspicious abnormality"),
    5: hd.sr.CodedConcept("397145000", "SCT", "BI-RADS 5 - Highly suggestive of malignancy"),
    6: hd.sr.CodedConcept("111125", "DCM", "BI-RADS 6 - Known biopsy proven malignancy"),
}
#: ACR density -> CID 6000 Overall Breast Composition.
DENSITY_CODES: Final[dict[str, hd.sr.CodedConcept]] = {
    "A": hd.sr.CodedConcept("129716005", "SCT", "Almost entirely fat"),
    "B": hd.sr.CodedConcept("129717001", "SCT", "Scattered fibroglandular densities"),
    "C": hd.sr.CodedConcept("129718006", "SCT", "Heterogeneously dense"),
    "D": hd.sr.CodedConcept("129719003", "SCT", "Extremely dense"),
}

NOT_VALIDATED: Final[str] = (
    "Resultado de IA no validado clínicamente; no sustituye la interpretación del radiólogo. / "
    "AI result, not clinically validated; no substitute for the radiologist's reading."
)
SYNTHETIC_LABEL: Final[str] = "Modelo de demostración con datos sintéticos / synthetic-data demonstration model"
UNTRAINED_LABEL: Final[str] = "Modelo SIN ENTRENAR: solo demostración / UNTRAINED model: demonstration only"
UNVALIDATED_LABEL: Final[str] = "Modelo de IA no validado clínicamente / AI model, not clinically validated"
BREAST_NAMES: Final[dict[str, str]] = {"R": "Mama derecha / right breast", "L": "Mama izquierda / left breast"}
LIGHT_WORDS: Final[dict[str, str]] = {"RED": "ROJO / RED", "YELLOW": "AMARILLO / YELLOW", "GREEN": "VERDE / GREEN"}


def trained_on_synthetic(event: StudyInferred) -> bool:
    """Whether the model that produced the result was trained on synthetic images."""
    trained_on = event.model_trained_on.lower()
    return "sintétic" in trained_on or "synthetic" in trained_on


def model_label(event: StudyInferred) -> str:
    """The line that says what kind of model produced the result (shown on the mosaic)."""
    if not event.model_trained:
        return UNTRAINED_LABEL
    return SYNTHETIC_LABEL if trained_on_synthetic(event) else UNVALIDATED_LABEL


def standing_statements(event: StudyInferred) -> list[tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]]:
    """The coded statements about the model every results object carries: (question, answer) pairs."""
    if not event.model_trained:
        training = NO_TRAINING
    else:
        training = SYNTHETIC_IMAGES if trained_on_synthetic(event) else OTHER_TRAINING_DATA
    return [
        (INTENDED_USE, DEMONSTRATION_ONLY),
        (TRAINING_DATA, training),
        (CLINICAL_VALIDATION, NOT_CLINICALLY_VALIDATED),
    ]


def impression_text(event: StudyInferred) -> str:
    """The triage light, its reason, the model's standing and the disclaimer, as one readable text."""
    parts = [f"SEMÁFORO {LIGHT_WORDS[event.triage_light]}: {event.triage_reason}", model_label(event), event.disclaimer, NOT_VALIDATED]
    return " ".join(part.strip() for part in parts if part.strip())
