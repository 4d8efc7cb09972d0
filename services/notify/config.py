"""The notification rules: who is told what, per hospital, read from a TOML file and checked at start-up.

``MDD_NOTIFY_RULES_FILE`` names the file (format in docs/notifications.md). Without it the rules
come from ``MDD_NOTIFY_EMAILS`` / ``MDD_NOTIFY_RED_EMAILS`` (every result, failures, RED lights).
Any mistake — a TOML syntax error, an unknown event, a rule naming a recipient that does not
exist, an apprise URL apprise cannot use — is a ``ConfigurationError`` (exit code 2).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import ConfigurationError
from shared.events import Light
from shared.settings import Settings
from services.notify.adapters.channels import Channel, ChannelKind, resolve_channel

EVENTS: tuple[str, ...] = ("study.inferred", "study.failed", "study.overdue", "daily_digest")
DEFAULT_TIMEZONE = "America/Mexico_City"
ANY_HOSPITAL = "*"
Language = Literal["es", "en"]
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RecipientSpec(BaseModel):
    """A person or team as written in the file: name, language and channels."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    language: Language = "es"
    channels: list[str] = Field(min_length=1)


class RuleSpec(BaseModel):
    """A rule as written in the file: on which event, to whom, through which kinds of channel."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    event: str
    lights: list[Light] | None = None
    at: time | None = None
    recipients: list[str] = Field(min_length=1)
    channels: list[ChannelKind] | None = None

    @field_validator("event")
    @classmethod
    def _known_event(cls, event: str) -> str:
        if event not in EVENTS:
            raise ValueError(f"evento desconocido / unknown event '{event}'; válidos / valid: {', '.join(EVENTS)}")
        return event

    @model_validator(mode="after")
    def _fields_fit_the_event(self) -> "RuleSpec":
        if self.lights is not None and self.event != "study.inferred":
            raise ValueError("'lights' solo aplica a study.inferred / 'lights' only applies to study.inferred")
        if (self.at is None) != (self.event != "daily_digest"):
            raise ValueError("'at' (HH:MM) es obligatorio solo en daily_digest / 'at' is required for daily_digest only")
        return self


class HospitalSpec(BaseModel):
    """One hospital's recipients and rules (``*`` applies to hospitals not listed)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str | None = None
    recipients: dict[str, RecipientSpec] = Field(default_factory=dict)
    rules: list[RuleSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> "HospitalSpec":
        ids = [rule.id for rule in self.rules]
        if duplicated := sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1}):
            raise ValueError(f"reglas repetidas / duplicate rule ids: {', '.join(duplicated)}")
        for rule in self.rules:
            if unknown := [name for name in rule.recipients if name not in self.recipients]:
                raise ValueError(
                    f"la regla '{rule.id}' nombra destinatarios inexistentes / rule '{rule.id}' names unknown "
                    f"recipients: {', '.join(unknown)}"
                )
        return self


class RulesFile(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = DEFAULT_TIMEZONE
    sms_gateway: str | None = Field(None, description="apprise SMS URL to which phone shorthands are appended")
    hospitals: dict[str, HospitalSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _zones_exist(self) -> "RulesFile":
        for zone in [self.timezone, *(h.timezone for h in self.hospitals.values() if h.timezone)]:
            _zone(zone)
        return self


@dataclass(frozen=True)
class Recipient:
    """A recipient with its channels resolved to apprise URLs."""

    id: str
    name: str
    language: Language
    channels: tuple[Channel, ...]


@dataclass(frozen=True)
class Rule:
    """A rule ready to apply."""

    id: str
    event: str
    recipients: tuple[Recipient, ...]
    lights: frozenset[str] | None = None
    at: time | None = None
    channel_kinds: frozenset[str] | None = None

    def channels_of(self, recipient: Recipient) -> list[Channel]:
        """The recipient's channels this rule uses."""
        return [c for c in recipient.channels if self.channel_kinds is None or c.kind in self.channel_kinds]


@dataclass(frozen=True)
class HospitalRules:
    """The rules that apply to one hospital's studies, and the hospital's time zone."""

    hospital_id: str
    timezone: ZoneInfo
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class RuleBook:
    """Every hospital's rules; where they came from (a file or the settings)."""

    source: str
    hospitals: dict[str, HospitalRules]

    def for_hospital(self, hospital_id: str) -> HospitalRules | None:
        """A hospital's own rules, else those of ``*``, else none."""
        return self.hospitals.get(hospital_id) or self.hospitals.get(ANY_HOSPITAL)

    def channel(self, hospital_id: str, rule_id: str, recipient_id: str, kind: str, target: str) -> Channel | None:
        """The channel a recorded delivery goes through, looked up again (its URL holds secrets, never stored).

        The hospital's own rules are searched first, then those of ``*``; ``None`` when the rules no
        longer have it.
        """
        for hospital in (self.hospitals.get(hospital_id), self.hospitals.get(ANY_HOSPITAL)):
            for rule in hospital.rules if hospital else ():
                if rule.id != rule_id:
                    continue
                for recipient in rule.recipients:
                    if recipient.id == recipient_id:
                        for channel in rule.channels_of(recipient):
                            if channel.kind == kind and channel.target == target:
                                return channel
        return None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"zona horaria desconocida / unknown time zone '{name}'") from exc


def _expand_env(value: Any, missing: set[str]) -> Any:
    """Replace ``${NAME}`` in every string with the environment variable (secrets stay out of the file)."""
    if isinstance(value, str):
        missing.update(name for name in _ENV_REFERENCE.findall(value) if name not in os.environ)
        return _ENV_REFERENCE.sub(lambda match: os.environ.get(match.group(1), ""), value)
    if isinstance(value, list):
        return [_expand_env(item, missing) for item in value]
    if isinstance(value, dict):
        return {key: _expand_env(item, missing) for key, item in value.items()}
    return value


def _invalid(source: str, problems: list[str]) -> ConfigurationError:
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return ConfigurationError(
        f"Reglas de notificación inválidas / invalid notification rules ({source}):\n{lines}"
    )


def _validation_problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(archivo / file)"
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return problems


def resolve(spec: RulesFile, settings: Settings, source: str) -> RuleBook:
    """Resolve every channel of a validated file into apprise URLs; raise ``ConfigurationError`` on any problem."""
    problems: list[str] = []
    hospitals: dict[str, HospitalRules] = {}
    for hospital_id, hospital in spec.hospitals.items():
        recipients: dict[str, Recipient] = {}
        for recipient_id, recipient in hospital.recipients.items():
            channels = []
            for index, written in enumerate(recipient.channels):
                try:
                    channels.append(resolve_channel(written, settings, spec.sms_gateway))
                except ValueError as exc:
                    problems.append(f"hospitals.{hospital_id}.recipients.{recipient_id}.channels.{index}: {exc}")
            recipients[recipient_id] = Recipient(recipient_id, recipient.name or recipient_id, recipient.language, tuple(channels))
        rules = tuple(
            Rule(
                id=rule.id,
                event=rule.event,
                recipients=tuple(recipients[name] for name in rule.recipients),
                lights=frozenset(rule.lights) if rule.lights is not None else None,
                at=rule.at,
                channel_kinds=frozenset(rule.channels) if rule.channels is not None else None,
            )
            for rule in hospital.rules
        )
        hospitals[hospital_id] = HospitalRules(hospital_id, _zone(hospital.timezone or spec.timezone), rules)
    if problems:
        raise _invalid(source, problems)
    return RuleBook(source, hospitals)


def parse_rules(data: dict[str, Any], settings: Settings, source: str) -> RuleBook:
    """Validate rules already read from TOML (environment references expanded first)."""
    missing: set[str] = set()
    data = _expand_env(data, missing)
    if missing:
        raise _invalid(source, [f"variables de entorno sin definir / undefined environment variables: {', '.join(sorted(missing))}"])
    try:
        spec = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise _invalid(source, _validation_problems(exc)) from None
    return resolve(spec, settings, source)


def load_rules_file(path: Path, settings: Settings) -> RuleBook:
    """Read and validate a rules file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _invalid(str(path), [f"no se puede leer / cannot read: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise _invalid(str(path), [f"TOML inválido / invalid TOML: {exc}"]) from None
    return parse_rules(data, settings, str(path))


def rules_from_settings(settings: Settings) -> RuleBook:
    """The simple default: every result and failure to NOTIFY_EMAILS, RED lights also to NOTIFY_RED_EMAILS."""
    everyone, red = list(dict.fromkeys(settings.notify_emails)), list(dict.fromkeys(settings.notify_red_emails))
    recipients = {address: {"channels": [address]} for address in [*everyone, *red]}
    rules: list[dict[str, Any]] = []
    if everyone:
        rules.append({"id": "result_ready", "event": "study.inferred", "recipients": everyone})
    if red:
        rules.append({"id": "triage_red", "event": "study.inferred", "lights": ["RED"], "recipients": red})
    if everyone:
        rules.append({"id": "study_failed", "event": "study.failed", "recipients": everyone})
    data = {"hospitals": {ANY_HOSPITAL: {"recipients": recipients, "rules": rules}}}
    return parse_rules(data, settings, "MDD_NOTIFY_EMAILS / MDD_NOTIFY_RED_EMAILS")


def load_rulebook(settings: Settings) -> RuleBook:
    """The rules in force: the rules file when one is set, otherwise those from the e-mail settings."""
    if settings.notify_rules_file is not None:
        return load_rules_file(settings.notify_rules_file, settings)
    return rules_from_settings(settings)

