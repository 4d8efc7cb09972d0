"""One MinIO user and policy per service: its buckets, read or read-write (``infra.provision.access``).

Run with the root credentials (``mdd provision``), which no service holds; idempotent, and a second
run sets the secret keys again (rotation).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from minio import Minio
from minio.credentials import StaticProvider
from minio.minioadmin import MinioAdmin

from infra.provision.access import SERVICES, minio_policy, minio_user
from shared.settings import Settings

log = logging.getLogger("mdd.provision")


def provision_minio(settings: Settings, root_user: str, root_password: str, secret_keys: Mapping[str, str]) -> list[str]:
    """Create the buckets, then every service's user with its own policy; return the user names."""
    missing = [service for service in SERVICES if not secret_keys.get(service)]
    if missing:
        raise ValueError(f"Faltan claves MinIO de / missing MinIO keys for: {', '.join(missing)}")
    endpoint, secure = settings.minio_endpoint, settings.minio_secure
    client = Minio(endpoint, access_key=root_user, secret_key=root_password, secure=secure, region=settings.minio_region)
    for bucket in (settings.bucket_dicom, settings.bucket_derived, settings.bucket_results):
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
    admin = MinioAdmin(endpoint=endpoint, credentials=StaticProvider(root_user, root_password), secure=secure)
    users = []
    for service in SERVICES:
        user, policy_name = minio_user(service), f"mdd-{service.replace('_', '-')}-policy"
        admin.policy_add(policy_name, policy=minio_policy(service, settings))
        admin.user_add(user, secret_keys[service])
        attached = _attached_policies(admin, user)
        if policy_name not in attached:
            admin.attach_policy([policy_name], user=user)
        stale = [name for name in attached if name != policy_name]
        if stale:
            admin.detach_policy(stale, user=user)
        users.append(user)
        log.info("Usuario MinIO listo / MinIO user ready: %s (%s)", user, policy_name)
    return users


def _attached_policies(admin: MinioAdmin, user: str) -> list[str]:
    info = json.loads(admin.user_info(user))
    return [name for name in str(info.get("policyName") or "").split(",") if name]
