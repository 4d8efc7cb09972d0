"""Registry of external providers: who they are, which hospitals they serve and how they receive.

A provider gets the studies of its hospitals by signed webhook, on its own broker topic, or both;
``deidentify`` makes it receive de-identified copies instead of the original instances.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from pydantic import AnyHttpUrl, BaseModel, Field as PydanticField, field_validator, model_validator
from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from shared.db import init_db
from shared.events import utc_now

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")


class ProviderError(ValueError):
    """A provider request that cannot be carried out (invalid, duplicate, unknown)."""


class Provider(SQLModel, table=True):
    """A registered provider. ``webhook_secret`` signs its webhooks; ``deid_seed`` keys its UIDs."""

    __tablename__ = "notify_provider"

    provider_id: str = Field(primary_key=True)
    display_name: str
    hospitals: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    webhook_url: str | None = None
    webhook_secret: str | None = None
    deidentify: bool = False
    kafka: bool = False
    deid_seed: str = Field(default_factory=lambda: secrets.token_hex(32))
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    active: bool = True

    def serves(self, hospital_id: str) -> bool:
        """Whether this provider reads the studies of ``hospital_id``."""
        return hospital_id in self.hospitals


class ProviderSpec(BaseModel):
    """What an operator gives to register a provider (validated before anything is stored)."""

    provider_id: str = PydanticField(description="Slug: lowercase letters, digits and hyphens")
    display_name: str = PydanticField(min_length=1)
    hospitals: list[str]
    webhook_url: AnyHttpUrl | None = None
    deidentify: bool = False
    kafka: bool = False

    @field_validator("provider_id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError(
                f"identificador inválido {value!r}: minúsculas, dígitos y guiones, 1-48 caracteres"
                f" / invalid provider id: lowercase letters, digits and hyphens"
            )
        return value

    @field_validator("hospitals")
    @classmethod
    def _hospitals(cls, value: list[str]) -> list[str]:
        cleaned = list(dict.fromkeys(h.strip() for h in value if h.strip()))
        if not cleaned:
            raise ValueError("indique al menos un hospital / give at least one hospital")
        return cleaned

    @model_validator(mode="after")
    def _has_a_channel(self) -> ProviderSpec:
        if self.webhook_url is None and not self.kafka:
            raise ValueError("el proveedor necesita webhook o kafka / a provider needs a webhook or kafka")
        return self


def init_registry(engine: Engine) -> None:
    """Create the provider table if it does not exist."""
    init_db(engine, [Provider])


def add_provider(engine: Engine, spec: ProviderSpec) -> Provider:
    """Store a new provider; a webhook secret is generated when it has a webhook.

    Raises ``ProviderError`` when the id is taken.
    """
    provider = Provider(
        provider_id=spec.provider_id,
        display_name=spec.display_name,
        hospitals=spec.hospitals,
        webhook_url=str(spec.webhook_url) if spec.webhook_url else None,
        webhook_secret=secrets.token_urlsafe(32) if spec.webhook_url else None,
        deidentify=spec.deidentify,
        kafka=spec.kafka,
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(provider)
        try:
            session.commit()
        except IntegrityError as exc:
            raise ProviderError(
                f"El proveedor {spec.provider_id!r} ya existe / provider already exists"
            ) from exc
    return provider


def get_provider(engine: Engine, provider_id: str) -> Provider:
    """One provider by id; raises ``ProviderError`` when unknown."""
    with Session(engine) as session:
        provider = session.get(Provider, provider_id)
    if provider is None:
        raise ProviderError(f"Proveedor desconocido / unknown provider: {provider_id!r}")
    return provider


def list_providers(engine: Engine, *, active_only: bool = False) -> list[Provider]:
    """Every provider, by id."""
    query = select(Provider).order_by(Provider.provider_id)  # type: ignore[arg-type]
    if active_only:
        query = query.where(col(Provider.active).is_(True))
    with Session(engine) as session:
        return list(session.exec(query).all())


def providers_for_hospital(engine: Engine, hospital_id: str) -> list[Provider]:
    """The active providers that serve ``hospital_id``."""
    return [provider for provider in list_providers(engine, active_only=True) if provider.serves(hospital_id)]


def deactivate_provider(engine: Engine, provider_id: str) -> Provider:
    """Stop sending studies to a provider (its records and mappings are kept)."""
    with Session(engine, expire_on_commit=False) as session:
        provider = session.get(Provider, provider_id)
        if provider is None:
            raise ProviderError(f"Proveedor desconocido / unknown provider: {provider_id!r}")
        provider.active = False
        session.add(provider)
        session.commit()
    return provider


def remove_provider(engine: Engine, provider_id: str) -> None:
    """Forget a provider that never received anything (undoes a registration that failed half-way)."""
    with Session(engine) as session:
        provider = session.get(Provider, provider_id)
        if provider is not None:
            session.delete(provider)
            session.commit()
