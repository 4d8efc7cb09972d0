"""What a provider is offered for a completed study: identifiers and time-limited download links.

For a de-identifying provider each instance is de-identified, written to the results bucket under
``deid/{provider_id}/{study}/{series}/{sop}.dcm`` and the mapping back to the original study is
kept before anything is sent. Links are the store's presigned URLs; the local-folder store has
none, so the offer then says so in ``links_note`` instead of pointing anywhere else.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from shared.events import OfferedInstance, ProviderStudyOffer, StudyCompleted, ViewRef, producer, utc_now
from shared.runtime import ServiceContext
from shared.store import ObjectNotFound
from services.notify.providers.deidentify import deidentify
from services.notify.providers.deliveries import delivery_id
from services.notify.providers.mapping import record_mapping
from services.notify.providers.registry import Provider
from services.notify.providers.tables import DeidStudyMap

SERVICE = "notify"
DICOM_CONTENT_TYPE = "application/dicom"
NO_LINKS_NOTE = (
    "El almacén local (modo embebido) no genera enlaces de descarga; configure MinIO/S3 para enviar"
    " estudios a proveedores / the local-folder store has no download links; use MinIO/S3 to send"
    " studies to providers"
)


def deid_key(provider_id: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Object key of a de-identified copy in the results bucket."""
    return f"deid/{provider_id}/{study_uid}/{series_uid}/{sop_uid}.dcm"


def deid_seed(provider: Provider, hospital_id: str) -> str:
    """The de-identification seed of ``provider`` for one hospital's studies: two hospitals' studies
    that share a UID get different pseudonymous UIDs, so they never merge at the provider."""
    return f"{provider.deid_seed}:{hospital_id}"


def build_offer(ctx: ServiceContext, provider: Provider, event: StudyCompleted) -> ProviderStudyOffer:
    """The offer of ``event``'s study to ``provider`` (blocking: store reads and writes).

    Raises ``DeidentificationError`` for an instance that cannot be de-identified safely.
    """
    settings = ctx.settings
    lifetime = timedelta(seconds=settings.provider_link_ttl_seconds)
    expires_at = utc_now() + lifetime
    study_uid, accession = event.study_uid, event.accession_number
    instances: list[OfferedInstance] = []
    for view in event.views:
        if provider.deidentify:
            instance, study_uid, accession = _deidentified(ctx, provider, event.hospital_id, view, lifetime)
        else:
            instance = _original(ctx, view, lifetime)
        instances.append(instance)
    if provider.deidentify:
        record_mapping(
            ctx.engine,
            DeidStudyMap(
                provider_id=provider.provider_id,
                deid_study_uid=study_uid,
                study_uid=event.study_uid,
                accession_number=event.accession_number,
                deid_accession_number=accession,
                hospital_id=event.hospital_id,
            ),
        )
    linked = bool(instances) and all(instance.url for instance in instances)
    offer_id = delivery_id(event.hospital_id, event.study_uid, provider.provider_id, provider.deid_seed)
    return ProviderStudyOffer(
        study_uid=study_uid,
        hospital_id=event.hospital_id,
        # a de-identified offer must not carry anything that links it to the internal study run
        correlation_id=str(offer_id) if provider.deidentify else event.correlation_id,
        accession_number=accession,
        producer=producer(SERVICE),
        provider_id=provider.provider_id,
        delivery_id=offer_id,
        deidentified=provider.deidentify,
        instances=instances,
        links_expire_at=expires_at if linked else None,
        links_note="" if linked else NO_LINKS_NOTE,
    )


def _deidentified(
    ctx: ServiceContext, provider: Provider, hospital_id: str, view: ViewRef, lifetime: timedelta
) -> tuple[OfferedInstance, str, str]:
    settings = ctx.settings
    copy = deidentify(ctx.store.get_bytes(settings.bucket_dicom, view.object_key), deid_seed(provider, hospital_id))
    key = deid_key(provider.provider_id, copy.study_uid, copy.series_uid, copy.sop_uid)
    ctx.store.put_bytes(settings.bucket_results, key, copy.data, DICOM_CONTENT_TYPE)
    instance = OfferedInstance(
        sop_instance_uid=copy.sop_uid,
        series_instance_uid=copy.series_uid,
        laterality=view.laterality,
        view_position=view.view_position,
        size_bytes=len(copy.data),
        sha256=hashlib.sha256(copy.data).hexdigest(),
        url=ctx.store.url_for(settings.bucket_results, key, expires=lifetime),
    )
    return instance, copy.study_uid, copy.accession_number


def _original(ctx: ServiceContext, view: ViewRef, lifetime: timedelta) -> OfferedInstance:
    bucket = ctx.settings.bucket_dicom
    info = ctx.store.stat(bucket, view.object_key)
    if info is None:
        raise ObjectNotFound(f"{bucket}/{view.object_key}")
    return OfferedInstance(
        sop_instance_uid=view.sop_instance_uid,
        series_instance_uid=view.series_instance_uid,
        laterality=view.laterality,
        view_position=view.view_position,
        size_bytes=info.size,
        sha256=info.sha256,
        url=ctx.store.url_for(bucket, view.object_key, expires=lifetime),
    )
