"""The study's AI result as an HL7 v2.5 ORU^R01 message (built and checked against v2.5 with hl7apy).

One message per study: PID (the patient as the images name it), ORC/OBR (the order, by accession
number; result status P, preliminary: an unverified AI result), then OBX segments a RIS can sort
its worklist by — the triage light (CWE), its reason (TX), per breast the probability of cancer (NM,
UCUM %), BI-RADS (CWE, SNOMED CT) and ACR density (CWE, SNOMED CT), the regions the model marked
(NM count per image side), and the coded statements that the model is a demonstration trained on
synthetic images, not for clinical use and not clinically validated (CWE), with the disclaimer (TX).
Local codes use the coding system ``99MDD`` (HL7 table 0396's local prefix).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message

from shared.events import StudyInferred
from services.notify.result_codes import (
    BIRADS_CODES,
    DENSITY_CODES,
    DISCLAIMER,
    LIGHT_CODES,
    NOT_VALIDATED,
    TRIAGE_LIGHT,
    TRIAGE_REASON,
    impression_text,
    standing_statements,
)
from services.notify.study_facts import StudyFacts

SENDING_APPLICATION: Final[str] = "MDD"
RECEIVING_APPLICATION: Final[str] = "RIS"
SERVICE: Final[str] = "MDD-IA^Análisis de IA de mastografía / AI mammography analysis^99MDD"
PROBABILITY: Final[str] = "MDD0020^Probabilidad de cáncer / probability of cancer^99MDD"
ASSESSMENT: Final[str] = "MDD0021^Categoría BI-RADS / BI-RADS category^99MDD"
DENSITY: Final[str] = "MDD0022^Densidad mamaria ACR / ACR breast density^99MDD"
REGIONS: Final[str] = "MDD0023^Regiones marcadas por el modelo / regions marked by the model^99MDD"
_ESCAPES: Final[dict[str, str]] = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\", "\r": " ", "\n": " "}


def escape(text: str) -> str:
    """Free text with HL7's delimiters escaped (PS: ``\\F\\``, ``\\S\\``, ``\\T\\``, ``\\R\\``, ``\\E\\``)."""
    return "".join(_ESCAPES.get(char, char) for char in text)


def _coded(concept: object) -> str:
    value, scheme, meaning = concept.value, concept.scheme_designator, concept.meaning  # type: ignore[attr-defined]
    scheme = {"SCT": "SCT", "DCM": "DCM"}.get(scheme, scheme)
    return f"{escape(value)}^{escape(meaning)}^{scheme}"


def oru_r01(event: StudyInferred, facts: StudyFacts, control_id: str, now: datetime, receiving_facility: str | None = None) -> str:
    """The ORU^R01 message (ER7, segments separated by CR) of the event's result for the study of ``facts``."""
    message = Message("ORU_R01", version="2.5", validation_level=VALIDATION_LEVEL.STRICT)
    msh = message.msh
    msh.msh_3 = SENDING_APPLICATION
    msh.msh_4 = escape(event.hospital_id)
    msh.msh_5 = RECEIVING_APPLICATION
    msh.msh_6 = escape(receiving_facility or event.hospital_id)
    msh.msh_7 = now.strftime("%Y%m%d%H%M%S")
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = control_id[:20]
    msh.msh_11 = "P"
    msh.msh_12 = "2.5"
    msh.msh_15 = "AL"  # accept acknowledgement always
    msh.msh_16 = "NE"
    msh.msh_18 = "UNICODE UTF-8"
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    pid = result.add_group("ORU_R01_PATIENT").pid
    pid.pid_1 = "1"
    pid.pid_3 = f"{escape(facts.patient_id)}^^^{escape(facts.issuer_of_patient_id)}"
    pid.pid_5 = "^".join(escape(part) for part in [facts.family_name, *facts.given_names]) or '""'
    if facts.birth_date:
        pid.pid_7 = facts.birth_date
    if facts.sex in ("F", "M", "O", "U"):
        pid.pid_8 = facts.sex
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.orc.orc_1 = "RE"
    order.orc.orc_2 = escape(facts.accession_number)
    order.orc.orc_3 = escape(facts.accession_number)
    order.obr.obr_1 = "1"
    order.obr.obr_2 = escape(facts.accession_number)
    order.obr.obr_3 = escape(facts.accession_number)
    order.obr.obr_4 = SERVICE
    if facts.study_date:
        order.obr.obr_7 = f"{facts.study_date}{facts.study_time.split('.')[0]}"
    order.obr.obr_22 = now.strftime("%Y%m%d%H%M%S")
    order.obr.obr_25 = "P"  # preliminary: an AI result no radiologist has verified
    order.add_segment("NTE").nte_3 = escape(impression_text(event))[:2000]  # the summary, for RIS that show notes

    observations: list[tuple[str, str, str, str, str]] = [  # value type, identifier, sub-id, value, units
        ("CWE", _coded(TRIAGE_LIGHT), "", _coded(LIGHT_CODES[event.triage_light]), ""),
        ("TX", _coded(TRIAGE_REASON), "", escape(event.triage_reason), ""),
    ]
    for breast in sorted(event.breasts, key=lambda b: b.laterality != "R"):
        side = breast.laterality
        observations += [
            ("NM", PROBABILITY, side, f"{100.0 * breast.malignancy_score:.1f}", "%^percent^UCUM"),
            ("CWE", ASSESSMENT, side, _coded(BIRADS_CODES[breast.birads]), ""),
            ("CWE", DENSITY, side, _coded(DENSITY_CODES[breast.density]), ""),
        ]
        marked = sum(1 for region in event.regions if region.laterality == side)
        if marked:
            observations.append(("NM", REGIONS, side, str(marked), ""))
    observations += [("CWE", _coded(question), "", _coded(answer), "") for question, answer in standing_statements(event)]
    observations += [
        ("TX", _coded(DISCLAIMER), "", escape(event.disclaimer), ""),
        ("TX", _coded(DISCLAIMER), "", escape(NOT_VALIDATED), ""),
    ]
    for index, (value_type, identifier, sub_id, value, units) in enumerate(observations, start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(index)
        obx.obx_2 = value_type
        obx.obx_3 = identifier
        if sub_id:
            obx.obx_4 = sub_id  # R or L: the OBX of one breast share it
        obx.obx_5 = value
        if units:
            obx.obx_6 = units
        obx.obx_11 = "P"
    if not message.validate():
        raise ValueError("ORU^R01 inválido / invalid ORU^R01")
    return message.to_er7()
