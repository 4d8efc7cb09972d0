"""The study's AI result as FHIR R4 resources, in one transaction Bundle for the HIS's FHIR server.

Built with the ``fhir.resources`` models (its R4B package: R4B changed nothing in these three
resources, and what we write validates as R4 4.0.1 with HAPI FHIR's validator, tests/validators.py):

- ImagingStudy: the study (DICOM Study Instance UID as ``urn:oid:``), its series and instances;
- Observation per finding: the triage light, and per breast the probability of cancer (UCUM %),
  the BI-RADS assessment and the ACR density (SNOMED CT), and the model's standing (demonstration,
  trained on synthetic images, not clinically validated), each ``preliminary`` and derived from the
  ImagingStudy;
- DiagnosticReport: ``preliminary``, based on the order (accession number), with the
  observations, the study, the impression as conclusion and the triage light as conclusion code.

The patient is referenced by identifier (the Patient ID and its issuer): the HIS owns the patient.
Resource ids and full URLs are derived from the study and the result, so a resend is the same
Bundle, and each entry is a conditional create (``ifNoneExist`` on its identifier): sending twice
creates nothing twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.observation import Observation

from shared.events import BreastResult, StudyInferred
from services.notify.result_codes import (
    BIRADS_CODES,
    DENSITY_CODES,
    LIGHT_CODES,
    MDD_SCHEME_UID,
    TRIAGE_LIGHT,
    impression_text,
    standing_statements,
)
from services.notify.study_facts import StudyFacts

SNOMED: Final[str] = "http://snomed.info/sct"
DICOM: Final[str] = "http://dicom.nema.org/resources/ontology/DCM"
UCUM: Final[str] = "http://unitsofmeasure.org"
LOCAL: Final[str] = f"urn:oid:{MDD_SCHEME_UID}"
OBSERVATION_CATEGORY: Final[str] = "http://terminology.hl7.org/CodeSystem/observation-category"
REPORT_CATEGORY: Final[str] = "http://terminology.hl7.org/CodeSystem/v2-0074"
IDENTIFIER_TYPE: Final[str] = "http://terminology.hl7.org/CodeSystem/v2-0203"
RESULT_IDENTIFIER_SYSTEM: Final[str] = "urn:mdd:result"
SCHEMES: Final[dict[str, str]] = {"SCT": SNOMED, "DCM": DICOM, "99MDD": LOCAL}
BREAST_SITE: Final[dict[str, dict[str, str]]] = {
    "R": {"system": SNOMED, "code": "73056007", "display": "Right breast"},
    "L": {"system": SNOMED, "code": "80248007", "display": "Left breast"},
}
SIDE_CODE: Final[dict[str, dict[str, str]]] = {
    "R": {"system": SNOMED, "code": "24028007", "display": "Right"},
    "L": {"system": SNOMED, "code": "7771000", "display": "Left"},
}
BREAST: Final[dict[str, str]] = {"system": SNOMED, "code": "76752008", "display": "Breast structure"}
PROBABILITY: Final[dict[str, str]] = {"system": LOCAL, "code": "MDD0020", "display": "Probabilidad de cáncer / probability of cancer"}
ASSESSMENT: Final[dict[str, str]] = {"system": LOCAL, "code": "MDD0021", "display": "Categoría BI-RADS / BI-RADS category"}
DENSITY: Final[dict[str, str]] = {"system": LOCAL, "code": "MDD0022", "display": "Densidad mamaria ACR / ACR breast density"}
REPORT_CODE: Final[dict[str, str]] = {"system": LOCAL, "code": "MDD-IA", "display": "Análisis de IA de mastografía / AI mammography analysis"}


def _coding(concept: Any) -> dict[str, str]:
    return {"system": SCHEMES[concept.scheme_designator], "code": concept.value, "display": concept.meaning}


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'mdd-fhir:' + ':'.join(parts))}"


def _fhir_datetime(date: str, time: str) -> str | None:
    """A DICOM date (and time) as a FHIR dateTime; ``None`` without a date."""
    if len(date) != 8 or not date.isdigit():
        return None
    day = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    digits = time.split(".")[0]
    if len(digits) >= 4 and digits.isdigit():
        seconds = digits[4:6] or "00"
        return f"{day}T{digits[:2]}:{digits[2:4]}:{seconds}-06:00"  # the hospitals' local time (America/Mexico_City)
    return day


class FhirResult:
    """The resources of one result; ``bundle()`` puts them in a transaction."""

    def __init__(self, event: StudyInferred, facts: StudyFacts, issued: datetime) -> None:
        self.event, self.facts, self.issued = event, facts, issued
        self.key = f"{event.hospital_id}:{event.study_uid}:{event.model_name}:{event.model_version}"
        self.study_url = _urn(self.key, "ImagingStudy")
        self.subject: dict[str, Any] = {
            "identifier": {
                "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "MR"}]},
                "system": f"urn:mdd:patient-id:{facts.issuer_of_patient_id}",
                "value": facts.patient_id,
            },
            "display": facts.patient_name.replace("^", " ").strip() or facts.patient_id,
        }
        self.effective = _fhir_datetime(facts.study_date, facts.study_time)

    def imaging_study(self) -> ImagingStudy:
        series = [
            {
                "uid": s.series_uid,
                **({"number": s.number} if s.number is not None else {}),
                "modality": {"system": DICOM, "code": s.modality or "OT"},
                "numberOfInstances": len(s.instances),
                "bodySite": BREAST,
                **({"laterality": SIDE_CODE[s.laterality]} if s.laterality in SIDE_CODE else {}),
                "instance": [{"uid": uid, "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{cls}"}} for uid, cls in s.instances],
            }
            for s in self.facts.series
        ]
        modalities = sorted({s.modality for s in self.facts.series if s.modality}) or ["MG"]
        return ImagingStudy.model_validate(
            {
                "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{self.facts.study_uid}"}]
                + ([{"type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "ACSN"}]}, "value": self.facts.accession_number}]
                   if self.facts.accession_number else []),
                "status": "available",
                "modality": [{"system": DICOM, "code": modality} for modality in modalities],
                "subject": self.subject,
                **({"started": self.effective} if self.effective else {}),
                "numberOfSeries": len(series),
                "numberOfInstances": sum(len(s.instances) for s in self.facts.series),
                **({"description": self.facts.study_description[:1024]} if self.facts.study_description else {}),
                "series": series,
            }
        )

    def _observation(self, name: str, code: dict[str, str], value: dict[str, Any], breast: str | None = None) -> tuple[str, Observation]:
        url = _urn(self.key, "Observation", name)
        resource = Observation.model_validate(
            {
                "identifier": [{"system": RESULT_IDENTIFIER_SYSTEM, "value": f"{self.key}:{name}"}],
                "status": "preliminary",
                "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}],
                "code": {"coding": [code], "text": code["display"]},
                "subject": self.subject,
                **({"effectiveDateTime": self.effective} if self.effective else {}),
                "issued": self.issued.isoformat(),
                "device": {"display": f"{self.event.model_name} {self.event.model_version}"},
                **({"bodySite": {"coding": [BREAST_SITE[breast]]}} if breast else {}),
                "derivedFrom": [{"reference": self.study_url}],
                "method": {"text": "Modelo de IA de demostración / demonstration AI model"},
                **value,
            }
        )
        return url, resource

    def observations(self) -> list[tuple[str, Observation]]:
        event = self.event
        found = [
            self._observation("triage-light", _coding(TRIAGE_LIGHT), {
                "valueCodeableConcept": {"coding": [_coding(LIGHT_CODES[event.triage_light])], "text": event.triage_reason[:1024]},
            })
        ]
        for breast in sorted(event.breasts, key=lambda b: b.laterality != "R"):
            found += self._breast(breast)
        for question, answer in standing_statements(event):
            found.append(self._observation(question.value, _coding(question), {"valueCodeableConcept": {"coding": [_coding(answer)]}}))
        return found

    def _breast(self, breast: BreastResult) -> list[tuple[str, Observation]]:
        side = breast.laterality
        return [
            self._observation(f"probability-{side}", PROBABILITY, {"valueQuantity": {
                "value": round(100.0 * breast.malignancy_score, 2), "unit": "%", "system": UCUM, "code": "%"}}, side),
            self._observation(f"birads-{side}", ASSESSMENT, {"valueCodeableConcept": {"coding": [_coding(BIRADS_CODES[breast.birads])]}}, side),
            self._observation(f"density-{side}", DENSITY, {"valueCodeableConcept": {"coding": [_coding(DENSITY_CODES[breast.density])]}}, side),
        ]

    def report(self, observation_urls: list[str]) -> tuple[str, DiagnosticReport]:
        url = _urn(self.key, "DiagnosticReport")
        order = {"identifier": {"type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "ACSN"}]}, "value": self.facts.accession_number}}
        resource = DiagnosticReport.model_validate(
            {
                "identifier": [{"system": RESULT_IDENTIFIER_SYSTEM, "value": self.key}],
                **({"basedOn": [order]} if self.facts.accession_number else {}),
                "status": "preliminary",
                "category": [{"coding": [{"system": REPORT_CATEGORY, "code": "RAD", "display": "Radiology"}]}],
                "code": {"coding": [REPORT_CODE], "text": REPORT_CODE["display"]},
                "subject": self.subject,
                **({"effectiveDateTime": self.effective} if self.effective else {}),
                "issued": self.issued.isoformat(),
                "result": [{"reference": u} for u in observation_urls],
                "imagingStudy": [{"reference": self.study_url}],
                "conclusion": impression_text(self.event)[:4000],
                "conclusionCode": [{"coding": [_coding(LIGHT_CODES[self.event.triage_light])]}],
            }
        )
        return url, resource

    def bundle(self) -> Bundle:
        """The transaction: the ImagingStudy, the Observations and the DiagnosticReport, each created once."""
        observations = self.observations()
        entries = [(self.study_url, self.imaging_study(), f"identifier=urn:dicom:uid|urn:oid:{self.facts.study_uid}")]
        entries += [(url, resource, f"identifier={RESULT_IDENTIFIER_SYSTEM}|{resource.identifier[0].value}") for url, resource in observations]
        report_url, report = self.report([url for url, _ in observations])
        entries.append((report_url, report, f"identifier={RESULT_IDENTIFIER_SYSTEM}|{self.key}"))
        return Bundle.model_validate(
            {
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": url,
                        "resource": resource.model_dump(mode="json", exclude_none=True),
                        "request": {"method": "POST", "url": resource.get_resource_type(), "ifNoneExist": condition},
                    }
                    for url, resource, condition in entries
                ],
            }
        )


def fhir_bundle(event: StudyInferred, facts: StudyFacts, issued: datetime) -> str:
    """The transaction Bundle of the event's result, as FHIR JSON."""
    return FhirResult(event, facts, issued).bundle().model_dump_json(exclude_none=True)
